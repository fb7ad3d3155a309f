"""Tests of bayesnas_jax.data.text on tiny hand-written corpora (and the real PTB when
present): tokenisation and vocabulary, errors, batchify and the BPTT windows."""
import os

import numpy as np
import pytest

from bayesnas_jax.data import text

PTB_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ptb")


def _write(folder, files):
  os.makedirs(folder, exist_ok=True)
  for name, content in files.items():
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
      f.write(content)
  return str(folder)


# ------------------------------------------------------------------------ read_corpus

def test_vocabulary_from_train_in_first_appearance_order_eos_after_every_line(tmp_path):
  folder = _write(tmp_path, {
      "train.txt": "  the   cat\tsat \n\nthe dog\n",
      "valid.txt": "dog the\ncat\n",
      "test.txt": "sat sat",  # no final newline: still one line, one <eos>
  })
  corpus = text.read_corpus(folder)
  assert corpus.vocab == ("the", "cat", "sat", "<eos>", "dog")
  # the cat sat <eos> | (empty line) <eos> | the dog <eos>
  assert corpus.train.tolist() == [0, 1, 2, 3, 3, 0, 4, 3]
  assert corpus.valid.tolist() == [4, 0, 3, 1, 3]
  assert corpus.test.tolist() == [2, 2, 3]
  for split in (corpus.train, corpus.valid, corpus.test):
    assert split.dtype == np.int32 and split.ndim == 1


def test_unknown_word_without_unk_names_file_line_and_word(tmp_path):
  folder = _write(tmp_path, {"train.txt": "a b\n", "valid.txt": "a\nb zebra\n",
                             "test.txt": "a\n"})
  with pytest.raises(ValueError, match=r"valid\.txt line 2.*'zebra'") as info:
    text.read_corpus(folder)
  assert "\n" not in str(info.value)


def test_unknown_word_maps_to_unk_from_train_and_is_not_added(tmp_path):
  folder = _write(tmp_path, {"train.txt": "a <unk>\n", "valid.txt": "zebra a\n",
                             "test.txt": "b\n"})
  corpus = text.read_corpus(folder)
  assert corpus.vocab == ("a", "<unk>", "<eos>")
  assert corpus.valid.tolist() == [1, 0, 2]
  assert corpus.test.tolist() == [1, 2]


def test_missing_file_and_folder(tmp_path):
  folder = _write(tmp_path / "two", {"train.txt": "a\n", "valid.txt": "a\n"})
  with pytest.raises(FileNotFoundError, match="test.txt") as info:
    text.read_corpus(folder)
  assert "\n" not in str(info.value)
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere.*train.txt"):
    text.read_corpus(missing)


@pytest.mark.parametrize("pattern", ["ptb.{}.txt", "wiki.{}.tokens"])
def test_ptb_and_wikitext_file_names(tmp_path, pattern):
  folder = _write(tmp_path, {pattern.format("train"): "x y\ny\n",
                             pattern.format("valid"): "y x\n",
                             pattern.format("test"): "\n"})
  corpus = text.read_corpus(folder)
  assert corpus.vocab == ("x", "y", "<eos>")
  assert corpus.train.tolist() == [0, 1, 2, 1, 2]
  assert corpus.valid.tolist() == [1, 0, 2]
  assert corpus.test.tolist() == [2]


def test_load_text_folder_and_errors(tmp_path):
  folder = _write(tmp_path / "c", {"train.txt": "a b\n", "valid.txt": "b\n",
                                   "test.txt": "a\n"})
  assert text.load_text(folder).train.tolist() == [0, 1, 2]
  with pytest.raises(FileNotFoundError, match="not a folder"):
    text.load_text(str(tmp_path / "absent"))
  tfds_dir = tmp_path / "tfds"
  tfds_dir.mkdir()
  for name in ("surely_not_a_dataset_xyz", "lm1b"):
    with pytest.raises(FileNotFoundError, match="not prepared.*pass a folder") as info:
      text.load_text(name, data_dir=str(tfds_dir))
    assert "\n" not in str(info.value) and name in str(info.value)


# --------------------------------------------------------------------------- batchify

def test_batchify_rows_are_contiguous_slices():
  batched = text.batchify(np.arange(23, dtype=np.int32), 4)
  assert batched.shape == (4, 5)  # 23 // 4 = 5 steps, 3 tokens dropped
  assert batched[0].tolist() == [0, 1, 2, 3, 4]
  assert batched[2].tolist() == [10, 11, 12, 13, 14]
  assert batched[3].tolist() == [15, 16, 17, 18, 19]
  assert text.batchify(np.arange(3), 3).tolist() == [[0], [1], [2]]


@pytest.mark.parametrize("batch_size", [0, 4])
def test_batchify_errors(batch_size):
  with pytest.raises(ValueError, match="batch_size"):
    text.batchify(np.arange(3), batch_size)


# ------------------------------------------------------------------------ BPTT windows

def _check_tiling(spans, num_steps):
  assert spans[0][0] == 0
  for (start, length), (next_start, _) in zip(spans, spans[1:]):
    assert next_start == start + length
  targets = [t for start, length in spans for t in range(start + 1, start + 1 + length)]
  assert len(targets) == len(set(targets))  # nothing repeated
  assert set(targets) == set(range(1, num_steps))  # nothing lost
  assert all(length >= 1 for _, length in spans)


def test_random_windows_tile_the_epoch_and_are_seeded():
  spans = text.bptt_windows(2000, 35, seed=3, epoch=0)
  _check_tiling(spans, 2000)
  assert spans == text.bptt_windows(2000, 35, seed=3, epoch=0)
  assert spans != text.bptt_windows(2000, 35, seed=3, epoch=1)
  assert spans != text.bptt_windows(2000, 35, seed=4, epoch=0)
  lengths = [length for _, length in spans[:-1]]
  assert min(lengths) >= 5
  assert len(set(lengths)) > 5  # the lengths really vary
  # Base 35 (p = 0.95) or 17.5, std 5: the mean is about 34; a broken draw is far off.
  assert 30 < np.mean(lengths) < 38


def test_min_len_respected_except_last():
  spans = text.bptt_windows(3000, 10, seed=0, epoch=2, p_full=0.0, min_len=8)
  _check_tiling(spans, 3000)
  lengths = [length for _, length in spans[:-1]]
  assert min(lengths) == 8  # base 5, std 5: many draws are clipped up to 8


def test_degenerate_random_lengths_by_hand():
  # std 0: every length is its base; p_full 1 -> bptt, p_full 0 -> bptt / 2.
  assert text.bptt_windows(100, 35, 0, 0, p_full=1.0, std=0.0) == [
      (0, 35), (35, 35), (70, 29)]
  assert text.bptt_windows(26, 20, 0, 0, p_full=0.0, std=0.0) == [
      (0, 10), (10, 10), (20, 5)]
  # base 3 is clipped to min_len 5; the last window keeps the 2 positions left.
  assert text.bptt_windows(13, 6, 0, 0, p_full=0.0, std=0.0) == [
      (0, 5), (5, 5), (10, 2)]
  assert text.bptt_windows(70, 35, 0, 0, p_full=1.0, std=0.0, max_len=30) == [
      (0, 30), (30, 30), (60, 9)]


def test_fixed_length_windows():
  assert text.bptt_windows(100, 35, 0, 0, random_length=False) == [
      (0, 35), (35, 35), (70, 29)]
  assert text.bptt_windows(71, 35, 5, 9, random_length=False) == [(0, 35), (35, 35)]
  assert text.bptt_windows(2, 35, 0, 0, random_length=False) == [(0, 1)]
  with pytest.raises(ValueError, match="num_steps"):
    text.bptt_windows(1, 35, 0, 0)


def test_windows_yield_inputs_and_shifted_targets():
  batched = text.batchify(np.arange(40, dtype=np.int64), 2)  # rows 0..19, 20..39
  out = list(text.windows(batched, 8, seed=0, epoch=0, random_length=False))
  assert [length for _, _, length in out] == [8, 8, 3]
  inputs, targets, _ = out[0]
  assert inputs.dtype == np.int32 and targets.dtype == np.int32
  assert inputs.tolist() == [list(range(0, 8)), list(range(20, 28))]
  assert targets.tolist() == [list(range(1, 9)), list(range(21, 29))]
  inputs, targets, _ = out[2]
  assert inputs.tolist() == [[16, 17, 18], [36, 37, 38]]
  assert targets.tolist() == [[17, 18, 19], [37, 38, 39]]
  resumed = list(text.windows(batched, 8, seed=0, epoch=0, random_length=False,
                              start_window=2))
  assert len(resumed) == 1 and resumed[0][0].tolist() == inputs.tolist()


# ------------------------------------------------------------------------ real PTB

@pytest.mark.skipif(not os.path.isdir(PTB_DIR), reason="no PTB under shared/data")
def test_real_ptb_counts():
  corpus = text.read_corpus(PTB_DIR)
  assert len(corpus.vocab) == 10000
  assert "<unk>" in corpus.vocab and "N" in corpus.vocab
  assert corpus.valid.size == 73760
  assert corpus.test.size == 82430
  # The well-known figure, 929,589, is 887,521 words + 42,068 lines. The copy in
  # shared/data ends with one extra empty line ("...\n\n"), which AWD-LSTM's reading
  # (and ours) turns into one more <eos>; allow exactly that.
  with open(os.path.join(PTB_DIR, "train.txt"), "rb") as f:
    raw = f.read()
  extra = len(raw) - len(raw.rstrip(b"\n")) - 1
  assert extra in (0, 1)
  assert corpus.train.size == 929589 + extra
  eos = corpus.vocab.index("<eos>")
  assert int((corpus.train != eos).sum()) == 887521
  # The first line is " aer banknote ... wachter " (24 words): ids 0..23, then <eos>.
  assert corpus.vocab[0] == "aer" and corpus.vocab[23] == "wachter"
  assert corpus.train[:25].tolist() == list(range(24)) + [24] and eos == 24


def test_quantised_lengths_are_multiples_and_still_tile():
  spans = text.bptt_windows(2001, 35, seed=3, epoch=1, max_len=55, quantum=5)
  lengths = [n for _, n in spans]
  assert all(n % 5 == 0 for n in lengths[:-1]) and len(set(lengths[:-1])) <= 11
  assert sum(lengths) == 2000 and [s for s, _ in spans] == list(np.cumsum([0] + lengths[:-1]))
