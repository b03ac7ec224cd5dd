"""Table 1: the tidy cell frame and its Markdown / LaTeX / CSV renderings."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fewshot.cli import main
from fewshot.report.compare import compare
from fewshot.report.tables import TABLE_COLUMNS, read_quoted, render_table, table_frame
from fewshot.results import EPISODE_COLUMNS, read_results, write_results
from fewshot.stats import median_run, summarize

NaN = math.nan


# ----------------------------------------------------------------- renderer from a fixture frame


def cell(method, dataset, shot, mean, hw, *, sig=False, best=False, quoted=False, level="run"):
    tested = not quoted and method != "CE"
    return dict(
        method=method,
        quoted=quoted,
        dataset=dataset,
        n_way=5,
        n_shot=shot,
        mean=mean,
        half_width=hw,
        seed=pd.NA,
        n_train_runs=pd.NA if quoted else (3 if level == "run" else 1),
        n_seeds=pd.NA if quoted else 3,
        n_episodes=pd.NA if quoted else 600,
        n_query=pd.NA if quoted else 15,
        run_mean_min=NaN,
        run_mean_max=NaN,
        between_run_sd=NaN,
        level=level if tested else "",
        run_test="paired" if tested and level == "run" else "",
        p_holm=NaN if not tested else (0.001 if sig else 0.5),
        significant=sig,
        best=best,
        baseline="CE",
        test="t",
        alpha=0.01,
    )


SPECIAL = "SCHaNe & co_1% #2"


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = [  # accuracies are fractions in the frame; rendered in percent
        cell("CE", "digits", 1, 0.90, 0.010, best=True),
        cell("CE", "mini-imagenet", 1, 0.60, 0.006),
        cell("CE", "cifar-fs", 1, 0.70, 0.005),
        cell("CE", "cifar-fs", 5, 0.80004, 0.004, best=True),
        cell(SPECIAL, "cifar-fs", 1, 0.72346, 0.005, sig=True, best=True),
        cell(SPECIAL, "cifar-fs", 5, 0.79996, 0.0041, best=True),  # ties CE at two decimals
        cell(SPECIAL, "mini-imagenet", 5, 0.75, 0.003, sig=True),
        cell(SPECIAL, "digits", 1, 0.89, 0.011),
        cell("Paper", "mini-imagenet", 1, 0.655, NaN, best=True, quoted=True),
        cell("Paper", "mini-imagenet", 5, 0.76, 0.002, best=True, quoted=True),
    ]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def md_cells(text: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    body = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        body[cells[0]] = cells[1:]
    return header, body


def test_markdown_cell_by_cell(frame: pd.DataFrame) -> None:
    text = render_table(frame, "md")
    header, body = md_cells(text)
    assert header == [
        "Method",
        "CIFAR-FS 1-shot",
        "CIFAR-FS 5-shot",
        "miniImageNet 1-shot",
        "miniImageNet 5-shot",
        "digits 1-shot",
    ]
    assert text.splitlines()[1] == "|:---|---:|---:|---:|---:|---:|"
    special = "SCHaNe & co\\_1% #2"
    assert list(body) == ["CE", special, "Paper ‡"]  # rows in frame order
    assert body["CE"] == ["70.00±0.50", "**80.00±0.40**", "60.00±0.60", "–", "**90.00±1.00**"]
    assert body[special] == ["**72.35±0.50**†", "**80.00±0.41**", "–", "75.00±0.30†", "89.00±1.10"]
    assert body["Paper ‡"] == ["–", "–", "**65.50**", "**76.00±0.20**", "–"]
    note = text.split("\n\n", 1)[1]
    for fact in (
        "mean over 3 training runs",
        "95% CI over the run means",
        "600 episodes × 3 episode seeds",
        "5-way",
        "15 queries",
        "paired t-test over run means",
        "Holm-corrected over 4 comparisons",
        "alpha = 0.01",
        "† significantly better than CE across training runs",
        "‡ quoted",
    ):
        assert fact in note


def test_checkpoint_level_significance_gets_its_own_mark_and_note() -> None:
    rows = [
        cell("CE", "cifar-fs", 1, 0.70, 0.005, level="checkpoint"),
        cell("S", "cifar-fs", 1, 0.71, 0.005, sig=True, best=True, level="checkpoint"),
    ]
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    text = render_table(frame, "md")
    _, body = md_cells(text)
    assert body["S"] == ["**71.00±0.50**\\*"] and "†" not in text
    note = text.split("\n\n", 1)[1]
    assert "one training run" in note and "episode sampling noise only" in note
    assert "\\* significantly better than CE at the checkpoint level only" in note
    assert "does not show that the objective is better" in note
    latex = render_table(frame, "latex")
    assert "\\textbf{71.00$\\pm$0.50}\\textsuperscript{*}" in latex


def test_quoted_rows_never_get_a_dagger(frame: pd.DataFrame) -> None:
    frame.loc[frame["quoted"], "significant"] = True
    _, body = md_cells(render_table(frame, "md"))
    assert "†" not in "".join(body["Paper ‡"])


def test_latex_booktabs_and_escapes(frame: pd.DataFrame) -> None:
    text = render_table(frame, "latex")
    body = [ln for ln in text.splitlines() if not ln.startswith("%")]
    assert body[0] == "\\begin{tabular}{lccccc}" and body[-1] == "\\end{tabular}"
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert body.count(rule) == 1
    assert body.index("\\toprule") < body.index("\\midrule") < body.index("\\bottomrule")
    assert "\\multicolumn{2}{c}{CIFAR-FS} & \\multicolumn{2}{c}{miniImageNet} & \\multicolumn{1}{c}{digits}" in text
    assert "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5} \\cmidrule(lr){6-6}" in text
    row = next(ln for ln in body if ln.startswith("SCHaNe"))
    assert row.startswith("SCHaNe \\& co\\_1\\% \\#2 & ")
    assert "\\textbf{72.35$\\pm$0.50}\\textsuperscript{\\dag}" in row and " -- " in row
    assert "Paper \\textsuperscript{\\ddag} & -- & -- & \\textbf{65.50} &" in text
    # every table row has one cell per column (unescaped & separators), and braces balance
    for ln in body[body.index("\\midrule") + 1 : body.index("\\bottomrule")]:
        assert len(re.findall(r"(?<!\\)&", ln)) == 5 and ln.endswith("\\\\")
    assert text.count("{") - text.count("\\{") == text.count("}") - text.count("\\}")
    assert "% † significantly better than CE" in text  # the note is caption material (comments)


def test_csv_keeps_raw_numbers(frame: pd.DataFrame) -> None:
    text = render_table(frame, "csv")
    back = pd.read_csv(io.StringIO(text))
    assert tuple(back.columns) == TABLE_COLUMNS
    assert back["mean"].tolist() == frame["mean"].tolist()  # fractions, as in the frame
    assert back["half_width"].tolist()[:2] == [0.010, 0.006]
    assert back["significant"].tolist() == frame["significant"].tolist()
    # re-rendering from the CSV gives the same Markdown
    assert render_table(back, "md") == render_table(frame, "md")


def test_render_rejects_bad_format_and_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fmt must be one of"):
        render_table(frame, "html")
    with pytest.raises(ValueError, match=r"lacks columns \['best'\]"):
        render_table(frame.drop(columns="best"), "md")


# ----------------------------------------------------------------- table_frame from results dirs


def episodes(
    dataset: str, shift: int, noise_seed: int, seeds=(0, 1, 2), n_episodes: int = 40, fp: str = "e"
) -> pd.DataFrame:
    noise = np.random.default_rng(noise_seed)
    rows = []
    for shot in (1, 5):
        for seed in seeds:
            difficulty = np.random.default_rng([seed, shot]).integers(30, 70, n_episodes)
            correct = np.clip(difficulty + shift + noise.integers(-3, 4, n_episodes), 0, 75)
            rows += [
                dict(
                    dataset=dataset,
                    split="test",
                    n_way=5,
                    n_shot=shot,
                    n_query=15,
                    seed=seed,
                    episode=e,
                    accuracy=correct[e] / 75,
                    classifier="logreg",
                    features_fingerprint="f",
                    episodes_fingerprint=f"{fp}{dataset}{shot}{seed}",
                )
                for e in range(n_episodes)
            ]
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


def save(root: Path, label: str, df: pd.DataFrame) -> Path:
    name = f"{label}-{df['dataset'].iloc[0]}".replace(" ", "_").replace("/", "_")
    return write_results(root / name, df, summarize(df), {"label": label, "config": {}})


@pytest.fixture
def dirs(tmp_path: Path) -> list[Path]:
    return [
        save(tmp_path, "CE", episodes("mini-imagenet", 0, 1)),
        save(tmp_path, "CE", episodes("cifar-fs", 0, 1)),
        save(tmp_path, "SCHaNe", episodes("mini-imagenet", 3, 2)),
        save(tmp_path, "SCHaNe", episodes("cifar-fs", 3, 2)),
        save(tmp_path, "SupCon", episodes("cifar-fs", 0, 3)),
    ]


@pytest.fixture
def quoted_csv(tmp_path: Path) -> Path:
    path = tmp_path / "quoted.csv"
    path.write_text(
        "method,dataset,n_shot,mean,half_width,source\n"
        "BAVARDAGE,miniImageNet,1,99.50,0.20,paper\n"
        "BAVARDAGE,mini-imagenet,5,50.00,,paper\n"
    )
    return path


def test_table_frame_cells_are_median_runs_with_compare_significance(dirs: list[Path]) -> None:
    f = table_frame(dirs, baseline="CE")
    assert tuple(f.columns) == TABLE_COLUMNS
    assert list(dict.fromkeys(f["method"])) == ["CE", "SCHaNe", "SupCon"]
    assert list(zip(f["method"], f["dataset"], f["n_shot"]))[:4] == [
        ("CE", "cifar-fs", 1),
        ("CE", "cifar-fs", 5),
        ("CE", "mini-imagenet", 1),
        ("CE", "mini-imagenet", 5),
    ]
    assert len(f) == 10  # SupCon has no miniImageNet cells
    cmp = compare(dirs, baseline="CE").set_index(["method", "dataset", "n_shot"])
    for _, row in f.iterrows():
        eps = pd.concat([read_results(p).episodes for p in dirs if read_results(p).label == row["method"]])
        med = median_run(summarize(eps))
        ref = med[(med["dataset"] == row["dataset"]) & (med["n_shot"] == row["n_shot"])].iloc[0]
        # the same unit as summary.csv (fractions): the median seed's own numbers
        assert row["mean"] == ref["mean"] and row["half_width"] == ref["ci95"]
        assert row["seed"] == ref["seed"] and row["n_seeds"] == 3 and row["n_episodes"] == 40
        assert row["n_train_runs"] == 1 and row["level"] in ("", "checkpoint")
        if row["method"] == "CE":
            assert math.isnan(row["p_holm"]) and not row["significant"]
        else:
            c = cmp.loc[(row["method"], row["dataset"], row["n_shot"])]
            assert row["p_holm"] == c["p_holm"] and row["significant"] == c["significant"]
    assert f.loc[f["method"] == "SCHaNe", "significant"].all()
    assert f.loc[f["method"] == "SCHaNe", "best"].all()


def test_table_frame_order_and_quoted_rows(dirs: list[Path], quoted_csv: Path) -> None:
    f = table_frame(dirs, baseline="CE", quoted=quoted_csv)
    assert list(dict.fromkeys(f["method"])) == ["BAVARDAGE", "CE", "SCHaNe", "SupCon"]  # quoted first by default
    q = f[f["quoted"]]
    assert list(q["dataset"]) == ["mini-imagenet", "mini-imagenet"] and not q["significant"].any()
    assert q["best"].tolist() == [True, False]  # quoted rows compete for bold
    f = table_frame(dirs, baseline="CE", quoted=quoted_csv, order=["SCHaNe", "BAVARDAGE"])
    assert list(dict.fromkeys(f["method"])) == ["SCHaNe", "BAVARDAGE", "CE", "SupCon"]
    _, body = md_cells(render_table(f, "md"))
    assert list(body) == ["SCHaNe", "BAVARDAGE ‡", "CE", "SupCon"]
    assert body["BAVARDAGE ‡"] == ["–", "–", "**99.50±0.20**", "50.00"]
    assert body["SupCon"][2:] == ["–", "–"]
    assert body["SCHaNe"][3].endswith("**\\*")  # one training run each: checkpoint level


def test_table_frame_errors(dirs: list[Path], quoted_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Nope'\] in order"):
        table_frame(dirs, baseline="CE", order=["Nope"])
    with pytest.raises(ValueError, match="unknown baseline 'XE'"):
        table_frame(dirs, baseline="XE")
    clash = tmp_path / "clash.csv"
    clash.write_text("method,dataset,n_shot,mean,half_width\nCE,cifar-fs,1,50,1\n")
    with pytest.raises(ValueError, match="quoted method 'CE' has the same name as a results label"):
        table_frame(dirs, baseline="CE", quoted=clash)
    bad = save(tmp_path / "bad", "SCHaNe", episodes("cifar-fs", 3, 2, fp="zz"))
    with pytest.raises(ValueError, match="episode fingerprints differ"):
        table_frame([dirs[1], bad], baseline="CE")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method,dataset,n_shot,mean\nA,fc100,1,50\n", r"lacks columns \['half_width'\]"),
        ("method,dataset,n_shot,mean,half_width\nA,fc100,1,0.5x,1\n", "column 'mean' needs numbers"),
        ("method,dataset,n_shot,mean,half_width\nA,fc100,1,150,1\n", r"percentage in \[0, 100\]"),
        ("method,dataset,n_shot,mean,half_width\nA,fc100,1,50,1\nA,FC100,1,51,1\n", "lists 'A' on fc100 1-shot twice"),
        (
            "method,dataset,n_shot,mean,half_width\nA,fc100,1,0.5,0.01\nB,fc100,1,0.61,\n",
            r"every mean is <= 1, which looks like fractions; quoted results are in percent .* got mean=0.5 for 'A'",
        ),
    ],
)
def test_read_quoted_validates(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_quoted(path)
    with pytest.raises(FileNotFoundError, match="quoted results file not found"):
        read_quoted(tmp_path / "missing.csv")


def test_read_quoted_turns_published_percent_into_fractions(quoted_csv: Path) -> None:
    q = read_quoted(quoted_csv)
    assert q["mean"].tolist() == [0.995, 0.5]  # 99.50 % and 50.00 % as published
    assert q["half_width"].iloc[0] == pytest.approx(0.002, abs=1e-15) and math.isnan(q["half_width"].iloc[1])
    assert q["dataset"].tolist() == ["mini-imagenet", "mini-imagenet"]


def runs_episodes(dataset: str, run: str, shift: float, noise_seed: int) -> pd.DataFrame:
    df = episodes(dataset, 0, noise_seed)
    acc = np.clip(df["accuracy"].to_numpy() + shift, 0, 1)
    return df.assign(accuracy=acc, run=run)


def test_multi_run_cells_are_fractions_over_run_means(tmp_path: Path) -> None:
    """Several training runs: mean and t half-width over the run means, in the unit of compare."""
    paths = []
    for label, shifts in (("CE", (0.0, 0.01, -0.02)), ("S", (0.05, 0.03, 0.06))):
        for r, shift in enumerate(shifts):
            df = runs_episodes("cifar-fs", f"seed-{r}", shift, noise_seed=10 * r + len(label))
            paths.append(
                write_results(tmp_path / label / f"seed-{r}", df, summarize(df), {"label": label, "config": {}})
            )
    f = table_frame(paths, baseline="CE")
    cmp = compare(paths, baseline="CE", n_boot=0).set_index(["method", "dataset", "n_shot"])
    for _, row in f.iterrows():
        eps = pd.concat([read_results(p).episodes for p in paths if read_results(p).label == row["method"]])
        sel = eps[(eps["dataset"] == row["dataset"]) & (eps["n_shot"] == row["n_shot"])]
        run_means = [float(np.mean(g["accuracy"].to_numpy(np.float64))) for _, g in sorted(sel.groupby("run"))]
        k = len(run_means)
        mean = sum(run_means) / k
        sd = math.sqrt(sum((m - mean) ** 2 for m in run_means) / (k - 1))
        assert row["n_train_runs"] == 3 and 0 < row["mean"] < 1
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["half_width"] == pytest.approx(stats.t.ppf(0.975, k - 1) * sd / math.sqrt(k), rel=1e-12)
        assert row["between_run_sd"] == pytest.approx(sd, rel=1e-12)
        assert (row["run_mean_min"], row["run_mean_max"]) == pytest.approx((min(run_means), max(run_means)), rel=1e-12)
        if row["method"] == "S":
            c = cmp.loc[("S", row["dataset"], row["n_shot"])]
            assert c["level"] == "run" and row["level"] == "run"
            assert row["mean"] == pytest.approx(c["mean_method"], rel=1e-12)  # one unit in both frames
    _, body = md_cells(render_table(f, "md"))
    first = f.iloc[0]
    assert body["CE"][0].startswith(f"{100 * first['mean']:.2f}±{100 * first['half_width']:.2f}")


def test_single_method_table_warns_and_has_no_marks(tmp_path: Path) -> None:
    one = save(tmp_path, "CE", episodes("cifar-fs", 0, 1, seeds=(0,)))
    with pytest.warns(UserWarning, match="median of one seed"):
        f = table_frame([one])
    assert not f["significant"].any() and f["p_holm"].isna().all() and (f["n_seeds"] == 1).all()
    assert "†" not in render_table(f, "md")


def test_output_is_deterministic(dirs: list[Path], quoted_csv: Path) -> None:
    for fmt in ("md", "latex", "csv"):
        a = render_table(table_frame(dirs, baseline="CE", quoted=quoted_csv), fmt)
        b = render_table(table_frame(list(dirs), baseline="CE", quoted=quoted_csv), fmt)
        assert a.encode() == b.encode()


# ----------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("name", "fmt_arg", "first"),
    [
        ("t.md", [], "| Method |"),
        ("t.tex", [], "% Accuracy"),
        ("t.csv", [], "method,quoted,"),
        ("t.txt", ["--format", "latex"], "% Accuracy"),
    ],
)
def test_cli_table_writes_each_format(dirs, quoted_csv, tmp_path, capsys, name, fmt_arg, first) -> None:
    out = tmp_path / "tables" / name
    args = ["table", *map(str, dirs), "--baseline", "CE", "--quoted", str(quoted_csv), "--out", str(out), *fmt_arg]
    assert main(args) == 0
    assert out.read_text(encoding="utf-8").startswith(first)
    printed = capsys.readouterr().out
    assert "SCHaNe" in printed and f"wrote {out}" in printed


def test_cli_table_errors_exit_2(dirs, tmp_path, capsys) -> None:
    assert main(["table", *map(str, dirs), "--baseline", "CE", "--out", str(tmp_path / "t.html")]) == 2
    assert "cannot infer the format" in capsys.readouterr().err
    bad = save(tmp_path / "bad", "SCHaNe", episodes("cifar-fs", 3, 2, fp="zz"))
    out = tmp_path / "t.md"
    assert main(["table", str(dirs[1]), str(bad), "--baseline", "CE", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot table: error: cannot pair 'SCHaNe'") and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_fragment_compiles(frame: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "table1.tex").write_text(render_table(frame, "latex"), encoding="utf-8")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\begin{table}\n\\input{table1.tex}\n\\end{table}\n\\end{document}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
