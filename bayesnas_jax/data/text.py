"""Word-level language-model data: Penn Treebank / WikiText-2 as token-id streams.

The pipeline of AWD-LSTM (Merity, Keskar & Socher, "Regularizing and Optimizing LSTM
Language Models", ICLR 2018), also used by DARTS's recurrent-cell search, on the host
with numpy; every function is pure.

- ``read_corpus``: a folder with ``train.txt`` / ``valid.txt`` / ``test.txt`` (or
  ``ptb.{train,valid,test}.txt``, or WikiText's ``wiki.{train,valid,test}.tokens``).
  Each line is split on whitespace and followed by ``<eos>``; as in AWD-LSTM, *every*
  line gets its ``<eos>``, an empty one included (it contributes just ``<eos>``). The
  vocabulary comes from the training split alone, in order of first appearance, so ids
  are deterministic. A valid/test word outside it becomes ``<unk>`` when the vocabulary
  has one, else is an error.
- ``batchify``: the stream cut into ``B`` contiguous rows ``[B, steps]`` (batch-major;
  AWD-LSTM keeps ``[steps, B]``), the remainder dropped. Row ``b`` continues across
  windows, so a recurrent state can be carried from one window to the next.
- ``bptt_windows`` / ``windows``: the truncated-BPTT windows of one epoch. With
  ``random_length`` (AWD-LSTM), each window's base length is ``bptt`` with probability
  ``p_full`` (0.95) and ``bptt / 2`` otherwise, and its length is drawn from
  ``N(base, std)`` (std 5), rounded and clipped to at least ``min_len`` (5). The windows
  tile input positions ``0 .. steps - 2`` exactly (the last one is truncated): window
  ``(start, length)`` reads inputs ``[:, start:start + length]`` and predicts targets
  ``[:, start + 1:start + 1 + length]``. The lengths are a function of ``(seed, epoch)``
  alone. AWD-LSTM scales the learning rate by ``length / bptt`` per window, so
  ``windows`` yields the length with each window.
- ``load_text``: a folder (``read_corpus``), or a prepared TFDS text dataset by name.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
  """A tokenised corpus.

  Attributes:
    vocab: id -> word (from the training split, in order of first appearance).
    train, valid, test: int32 ``[N]`` token ids into ``vocab``.
  """

  vocab: tuple[str, ...]
  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray


def _lines(text: str) -> list[str]:
  """Lines of ``text`` as a file iterates them (a final newline ends, not adds, one)."""
  pieces = text.split("\n")
  if len(pieces) > 1 and pieces[-1] == "":
    pieces.pop()
  return pieces


def _encode_train(lines: Iterable[str], eos: str) -> tuple[dict[str, int], np.ndarray]:
  """Ids of the training lines, and the vocabulary they define."""
  vocab: dict[str, int] = {}
  ids = []
  for line in lines:
    for word in line.split():
      ids.append(vocab.setdefault(word, len(vocab)))
    ids.append(vocab.setdefault(eos, len(vocab)))
  return vocab, np.asarray(ids, np.int32)


def _encode(lines: Iterable[str], vocab: dict[str, int], eos: str, unk: str,
            where: str) -> np.ndarray:
  """Ids of valid/test lines; unknown words -> ``unk`` or a ValueError."""
  unk_id = vocab.get(unk)
  ids = []
  for number, line in enumerate(lines, 1):
    for word in line.split() + [eos]:
      i = vocab.get(word, unk_id)
      if i is None:
        raise ValueError(f"{where} line {number}: word {word!r} is not in the training "
                         f"vocabulary, which has no {unk!r} to map it to")
      ids.append(i)
  return np.asarray(ids, np.int32)


def _find_file(path: str, split: str, name: str) -> str:
  candidates = list(dict.fromkeys([name, f"ptb.{split}.txt", f"wiki.{split}.tokens"]))
  for candidate in candidates:
    full = os.path.join(path, candidate)
    if os.path.isfile(full):
      return full
  raise FileNotFoundError(f"{path}: no {split} file (tried {', '.join(candidates)})")


def read_corpus(path: str, files: Sequence[str] = ("train.txt", "valid.txt", "test.txt"),
                eos: str = "<eos>", unk: str = "<unk>") -> Corpus:
  """Read and tokenise a folder holding the train, valid and test files.

  Args:
    path: the folder.
    files: train, valid and test file names; for a missing one, ``ptb.{split}.txt``
      and then ``wiki.{split}.tokens`` are tried.
    eos: token appended to every line (empty lines included).
    unk: vocabulary word that valid/test words outside the vocabulary map to.

  Returns:
    The ``Corpus``.
  """
  if len(files) != 3:
    raise ValueError(f"files: want (train, valid, test) names, got {tuple(files)!r}")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such folder (expected one holding "
                            f"{', '.join(files)})")
  found = [_find_file(path, split, name) for split, name in zip(SPLITS, files)]
  with open(found[0], encoding="utf-8") as f:
    vocab, train = _encode_train(f, eos)
  if train.size == 0:
    raise ValueError(f"{found[0]}: the training file is empty")
  splits = []
  for file in found[1:]:
    with open(file, encoding="utf-8") as f:
      splits.append(_encode(f, vocab, eos, unk, file))
  return Corpus(tuple(vocab), train, *splits)


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
  """Cut a token stream into ``batch_size`` contiguous rows ``[batch_size, steps]``.

  Row ``b`` is ``tokens[b * steps:(b + 1) * steps]`` with ``steps = N // batch_size``;
  the last ``N % batch_size`` tokens are dropped.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"tokens: want a 1-D stream, got shape {tokens.shape}")
  if batch_size < 1 or tokens.shape[0] < batch_size:
    raise ValueError(f"batch_size: want 1 <= batch_size <= {tokens.shape[0]} (the "
                     f"stream length), got {batch_size}")
  steps = tokens.shape[0] // batch_size
  return tokens[:batch_size * steps].reshape(batch_size, steps)


def bptt_windows(num_steps: int, bptt: int, seed: int, epoch: int,
                 random_length: bool = True, p_full: float = 0.95, std: float = 5.0,
                 min_len: int = 5, max_len: int | None = None,
                 quantum: int = 1) -> list[tuple[int, int]]:
  """The ``(start, length)`` windows covering one epoch of a ``[B, num_steps]`` batch.

  Args:
    num_steps: columns of the batchified data (``steps - 1`` positions are inputs).
    bptt: the nominal window length.
    seed, epoch: select the random lengths (non-negative).
    random_length: AWD-LSTM's random lengths; if False every window but the last has
      length ``bptt``.
    p_full: probability of base length ``bptt`` (else ``bptt / 2``).
    std: standard deviation of the length around its base.
    min_len: shortest drawn length (the last window may be shorter).
    max_len: optional cap on drawn lengths (DARTS uses ``bptt + 20``).
    quantum: drawn lengths are rounded to a multiple of it (at least one quantum):
      a jitted step compiles once per distinct length, so 5 keeps that to a dozen.

  Returns:
    Contiguous windows: the first starts at 0, each starts where the previous ended, and
    the lengths sum to ``num_steps - 1``.
  """
  if num_steps < 2:
    raise ValueError(f"num_steps: want at least 2 (an input and a target), got "
                     f"{num_steps}")
  if bptt < 1:
    raise ValueError(f"bptt: want a positive integer, got {bptt}")
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed/epoch: want non-negative integers, got {seed}, {epoch}")
  if random_length:
    if not 0.0 <= p_full <= 1.0:
      raise ValueError(f"p_full: want a probability in [0, 1], got {p_full}")
    if std < 0:
      raise ValueError(f"std: want a non-negative number, got {std}")
    if min_len < 1 or (max_len is not None and max_len < min_len):
      raise ValueError(f"min_len/max_len: want 1 <= min_len <= max_len, got {min_len}, "
                       f"{max_len}")
  rng = np.random.default_rng([int(seed), int(epoch)])
  total = num_steps - 1
  out = []
  start = 0
  while start < total:
    length = bptt
    if random_length:
      base = bptt if rng.random() < p_full else bptt / 2
      length = max(min_len, int(round(rng.normal(base, std))))
      if max_len is not None:
        length = min(length, max_len)
      if quantum > 1:
        length = max(quantum, quantum * int(round(length / quantum)))
    length = min(length, total - start)
    out.append((start, length))
    start += length
  return out


def windows(batched: np.ndarray, bptt: int, seed: int, epoch: int,
            random_length: bool = True, p_full: float = 0.95, std: float = 5.0,
            min_len: int = 5, max_len: int | None = None, start_window: int = 0,
            quantum: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
  """Yield ``(inputs, targets, length)`` for the windows of one epoch.

  ``inputs`` and ``targets`` are int32 ``[B, length]``, targets shifted by one token.
  ``start_window`` skips the first windows (resume); the other arguments are those of
  ``bptt_windows``.
  """
  batched = np.asarray(batched)
  if batched.ndim != 2:
    raise ValueError(f"batched: want [batch, steps] (see batchify), got shape "
                     f"{batched.shape}")
  spans = bptt_windows(batched.shape[1], bptt, seed, epoch, random_length, p_full, std,
                       min_len, max_len, quantum)
  if not 0 <= start_window <= len(spans):
    raise ValueError(f"start_window: want 0 <= start_window <= {len(spans)}, got "
                     f"{start_window}")
  for start, length in spans[start_window:]:
    inputs = batched[:, start:start + length].astype(np.int32, copy=False)
    targets = batched[:, start + 1:start + 1 + length].astype(np.int32, copy=False)
    yield inputs, targets, length


def _tfds_corpus(name: str, data_dir: str, text_key: str, eos: str,
                 unk: str) -> Corpus:
  """A prepared TFDS text dataset (splits train/validation/test) as a ``Corpus``."""
  where = data_dir or "the default TFDS data_dir"
  hint = "pass a folder with train.txt, valid.txt and test.txt instead"

  def split_lines(split: str) -> Iterator[str]:
    try:
      import tensorflow_datasets as tfds
      source = tfds.data_source(name, split=split, data_dir=data_dir or None,
                                download=False)
    except Exception as error:  # noqa: BLE001 -- TFDS has no common "missing" type
      first = (str(error).strip().splitlines() or [""])[0]
      raise FileNotFoundError(f"TFDS text dataset {name!r} split {split!r} is not "
                              f"prepared in {where} ({type(error).__name__}: {first}); "
                              f"{hint}") from error
    for i in range(len(source)):
      text = source[i][text_key]
      yield from _lines(text.decode("utf-8") if isinstance(text, bytes) else str(text))

  vocab, train = _encode_train(split_lines("train"), eos)
  if train.size == 0:
    raise ValueError(f"TFDS text dataset {name!r}: the train split is empty")
  valid = _encode(split_lines("validation"), vocab, eos, unk, f"tfds {name} validation")
  test = _encode(split_lines("test"), vocab, eos, unk, f"tfds {name} test")
  return Corpus(tuple(vocab), train, valid, test)


def load_text(name_or_path: str, data_dir: str = "", text_key: str = "text",
              eos: str = "<eos>", unk: str = "<unk>") -> Corpus:
  """A folder (``read_corpus``) or a prepared TFDS text dataset by name.

  For TFDS, each example's ``text_key`` field is split into lines, and each line into
  words followed by ``eos``, as in ``read_corpus``; nothing is downloaded or prepared.
  """
  if os.path.isdir(name_or_path):
    return read_corpus(name_or_path, eos=eos, unk=unk)
  if os.sep in name_or_path or os.path.exists(name_or_path):
    raise FileNotFoundError(f"data.path: {name_or_path} is not a folder (expected one holding "
                            f"train.txt, valid.txt, test.txt)")
  return _tfds_corpus(name_or_path, data_dir, text_key, eos, unk)
