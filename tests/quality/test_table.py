"""Reading a tabular NB201 benchmark (`launch.quality --benchmark_table`) from a
small hand-made CSV: layouts, lookups, percentiles and one-line errors."""
import itertools

import numpy as np
import pytest

from bayesnas_jax.quality import table as benchmark_table

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def cell(ops):
  return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)


def write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


A = cell(["nor_conv_3x3"] * 6)
B = cell(["skip_connect"] * 6)
C = cell(["none"] * 6)


def test_reads_the_arch_accuracy_layout_and_scores_cells(tmp_path):
  path = write(tmp_path / "t.csv", ["arch,cifar10_test_accuracy", f"{A},93.76",
                                    f"{B},54.3", f"{C},10.0", f"{cell(['avg_pool_3x3'] * 6)},54.3"])
  table = benchmark_table.load(path)
  assert table.column == "cifar10_test_accuracy" and len(table.accuracy) == 4
  assert table.lookup(A) == 93.76
  # Below A: three cells of four, and A itself ties (counts half).
  assert table.percentile(93.76) == 100.0 * (3 + 0.5) / 4
  # Ties count half: one below, two equal.
  assert table.percentile(54.3) == 100.0 * (1 + 0.5 * 2) / 4
  rows, summary = benchmark_table.score(table, [{"seed": 0, "nb201": A},
                                                {"seed": 1, "nb201": B}])
  assert [r["table_accuracy"] for r in rows] == [93.76, 54.3]
  assert summary["mean"] == pytest.approx((93.76 + 54.3) / 2)
  assert summary["sd"] == pytest.approx(np.std([93.76, 54.3], ddof=1))


def test_reads_a_nats_bench_export_by_column(tmp_path):
  path = write(tmp_path / "nats.csv", ["index,arch_str,cifar10,cifar100",
                                       f"0,{A},93.5,70.1", f"1,{B},60.0,30.0"])
  with pytest.raises(ValueError, match="exactly one accuracy column"):
    benchmark_table.load(path)
  table = benchmark_table.load(path, "cifar100")
  assert table.lookup(B) == 30.0
  with pytest.raises(ValueError, match="'imagenet' is not one of its columns"):
    benchmark_table.load(path, "imagenet")


def test_every_cell_of_the_space_can_be_looked_up(tmp_path):
  lines = ["arch,acc"]
  for i, ops in enumerate(itertools.product(OPS, repeat=6)):
    lines.append(f"{cell(ops)},{i}")
  table = benchmark_table.load(write(tmp_path / "all.csv", lines))
  assert len(table.accuracy) == 5 ** 6
  # The index of a cell in product order, computed independently.
  ops = ["skip_connect", "none", "nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "none"]
  index = sum(OPS.index(o) * 5 ** (5 - i) for i, o in enumerate(ops))
  assert table.lookup(cell(ops)) == index


@pytest.mark.parametrize("lines,message", [
    (["arch"], "at least one cell"),
    (["name,acc", f"{A},1"], "architecture column"),
    (["arch,acc", f"{A},abc"], "line 2: expected a number in column 'acc'"),
    (["arch,acc", f"{A},nan"], "line 2: expected a finite accuracy"),
    (["arch,acc", f"{A},1", f"{A},2"], "line 3: cell .* listed twice"),
    (["arch,acc", "|conv~0|+|x~0|,1"], "line 2: NB201 string"),
    (["arch,acc", f"{A},1,2"], "line 2 has 3 fields"),
])
def test_a_malformed_table_gives_one_line_naming_the_file(tmp_path, lines, message):
  path = write(tmp_path / "bad.csv", lines)
  with pytest.raises(ValueError, match=message) as err:
    benchmark_table.load(path)
  text = str(err.value)
  assert "\n" not in text and text.startswith(f"--benchmark_table {path}")


def test_a_missing_file_or_cell_gives_one_line(tmp_path):
  with pytest.raises(ValueError, match="No such file"):
    benchmark_table.load(str(tmp_path / "absent.csv"))
  table = benchmark_table.load(write(tmp_path / "t.csv", ["arch,acc", f"{A},1"]))
  with pytest.raises(ValueError, match="is not in the table") as err:
    table.lookup(B)
  assert B in str(err.value) and "\n" not in str(err.value)
