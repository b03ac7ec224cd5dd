"""Paired comparison of results directories: pairing, statistics, refusals, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from fewshot.cli import main
from fewshot.report.compare import COMPARE_COLUMNS, compare
from fewshot.results import EPISODE_COLUMNS, read_results, write_results
from fewshot.stats import holm, summarize


def episodes(
    dataset: str = "cifar-fs",
    shots: tuple[int, ...] = (1, 5),
    seeds: tuple[int, ...] = (0, 1, 2),
    n_episodes: int = 40,
    shift: int = 0,
    noise_seed: int = 0,
    n_query: int = 15,
    split: str = "test",
    fingerprint: str = "e0",
) -> pd.DataFrame:
    """Synthetic per-episode rows: the task difficulty depends on (seed, shot, episode) only,
    so methods evaluated on the same episodes are correlated, as real ones are."""
    noise = np.random.default_rng(noise_seed)
    rows = []
    for shot in shots:
        for seed in seeds:
            difficulty = np.random.default_rng([seed, shot]).integers(30, 70, n_episodes)
            correct = np.clip(difficulty + shift + noise.integers(-3, 4, n_episodes), 0, 75)
            for e in range(n_episodes):
                rows.append(
                    dict(
                        dataset=dataset,
                        split=split,
                        n_way=5,
                        n_shot=shot,
                        n_query=n_query,
                        seed=seed,
                        episode=e,
                        accuracy=correct[e] / 75,
                        classifier="logreg",
                        features_fingerprint=f"f{noise_seed}",
                        episodes_fingerprint=f"{fingerprint}{dataset}{shot}{seed}abc",
                    )
                )
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


def save(root: Path, name: str, df: pd.DataFrame, label: str | None = None) -> Path:
    manifest = {"label": label or name, "config": {"dataset": df["dataset"].iloc[0], "ways": 5}}
    return write_results(root / name, df, summarize(df), manifest)


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    return [
        save(tmp_path, "CE", episodes(noise_seed=1)),
        save(tmp_path, "SCHaNe", episodes(shift=3, noise_seed=2)),
        save(tmp_path, "SupCon", episodes(shift=0, noise_seed=3)),
    ]


def test_columns_are_fixed_and_rows_one_per_comparison(three: list[Path]) -> None:
    df = compare(three)
    assert tuple(df.columns) == COMPARE_COLUMNS
    assert len(df) == 4  # 2 methods x 2 shots
    assert set(df["baseline"]) == {"CE"}
    assert list(df["method"]) == ["SCHaNe", "SupCon", "SCHaNe", "SupCon"]
    assert list(df["n_shot"]) == [1, 1, 5, 5]
    assert (df["n_episodes"] == 120).all() and (df["n_seeds"] == 3).all() and (df["dof"] == 119).all()
    assert (df["level"] == "checkpoint").all() and (df["n_runs_method"] == 1).all()
    assert df["significant"].dtype == bool


def test_statistics_match_scipy_on_pooled_pairs(three: list[Path]) -> None:
    df = compare(three)
    ce, sch = read_results(three[0]).episodes, read_results(three[1]).episodes
    for shot in (1, 5):
        a = sch[sch["n_shot"] == shot].sort_values(["seed", "episode"])["accuracy"].to_numpy()
        b = ce[ce["n_shot"] == shot].sort_values(["seed", "episode"])["accuracy"].to_numpy()
        row = df[(df["method"] == "SCHaNe") & (df["n_shot"] == shot)].iloc[0]
        t = st.ttest_rel(a, b)
        assert row["T"] == pytest.approx(t.statistic, rel=1e-10)
        assert row["p_val"] == pytest.approx(t.pvalue, rel=1e-8, abs=1e-300)
        w = st.wilcoxon(a, b, zero_method="zsplit", correction=False)
        assert row["p_wilcoxon"] == pytest.approx(w.pvalue, rel=1e-10, abs=1e-300)
        assert row["mean_method"] == pytest.approx(a.mean()) and row["mean_baseline"] == pytest.approx(b.mean())
        assert row["mean_diff"] == pytest.approx((a - b).mean())
        assert row["effect_size"] == pytest.approx((a - b).mean() / (a - b).std(ddof=1))
        lo, hi = st.t.interval(0.95, a.size - 1, loc=(a - b).mean(), scale=st.sem(a - b))
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((lo, hi))
        assert row["level"] == "checkpoint" and row["run_test"] == ""
    # Holm across all four comparisons, on the t p-values
    assert df["p_holm"].to_numpy() == pytest.approx(holm(df["p_val"].to_numpy()))
    assert list(df["significant"]) == list((df["p_holm"] < 0.01) & (df["mean_diff"] > 0))
    assert df.loc[df["method"] == "SCHaNe", "significant"].all()
    assert not df.loc[df["method"] == "SupCon", "significant"].any()


def test_wilcoxon_choice_drives_holm_and_significance(three: list[Path]) -> None:
    df = compare(three, test="wilcoxon", alpha=0.05)
    assert (df["test"] == "wilcoxon").all()
    assert df["p_holm"].to_numpy() == pytest.approx(holm(df["p_wilcoxon"].to_numpy()))
    assert list(df["significant"]) == list((df["p_holm"] < 0.05) & (df["mean_diff"] > 0))


def test_pairing_ignores_row_order(tmp_path: Path, three: list[Path]) -> None:
    shuffled = read_results(three[1]).episodes.sample(frac=1.0, random_state=0)
    other = save(tmp_path / "shuffled", "SCHaNe", shuffled)
    pd.testing.assert_frame_equal(compare(three[:2]), compare([three[0], other]))


def test_accepts_results_objects_and_baseline_by_label(three: list[Path]) -> None:
    objs = [read_results(p) for p in three]
    df = compare(objs, baseline="SupCon")
    assert set(df["baseline"]) == {"SupCon"} and set(df["method"]) == {"CE", "SCHaNe"}
    pd.testing.assert_frame_equal(compare(objs), compare(three))


def test_unknown_baseline_lists_labels(three: list[Path]) -> None:
    with pytest.raises(ValueError, match=r"unknown baseline 'XE'; the labels are \['CE', 'SCHaNe', 'SupCon'\]"):
        compare(three, baseline="XE")


def test_duplicate_label_on_the_same_runs_is_refused(tmp_path: Path, three: list[Path]) -> None:
    again = save(tmp_path / "again", "CE", episodes(noise_seed=9))
    with pytest.raises(
        ValueError,
        match=r"label 'CE': .*CE and .*again/CE both hold cifar-fs 5-way 1-shot seed 0; "
        r"training replicates of one method need distinct run names",
    ):
        compare([three[0], again, three[1]])


def test_directories_sharing_a_label_merge_across_datasets(tmp_path: Path) -> None:
    paths = [
        save(tmp_path / "a", "CE", episodes("cifar-fs", noise_seed=1), label="CE"),
        save(tmp_path / "b", "CE", episodes("fc100", noise_seed=1), label="CE"),
        save(tmp_path / "c", "S", episodes("cifar-fs", shift=2, noise_seed=2), label="S"),
        save(tmp_path / "d", "S", episodes("fc100", shift=2, noise_seed=2), label="S"),
    ]
    df = compare(paths)
    assert list(zip(df["dataset"], df["n_shot"])) == [("cifar-fs", 1), ("cifar-fs", 5), ("fc100", 1), ("fc100", 5)]


def test_single_run_input(tmp_path: Path) -> None:
    a = save(tmp_path, "CE", episodes(seeds=(7,), noise_seed=1))
    b = save(tmp_path, "S", episodes(seeds=(7,), shift=2, noise_seed=2))
    df = compare([a, b])
    assert (df["n_seeds"] == 1).all() and (df["n_episodes"] == 40).all()
    assert df["between_run_sd_method"].isna().all() and df["boot_ci95_low"].isna().all()


# ----------------------------------------------------------------- refusals


def test_refuses_mismatched_episode_fingerprints(tmp_path: Path) -> None:
    a = save(tmp_path, "CE", episodes(noise_seed=1))
    b = save(tmp_path, "S", episodes(noise_seed=2, fingerprint="ff"))
    with pytest.raises(
        ValueError,
        match=r"cannot pair 'S' \(.*S\) with baseline 'CE' \(.*CE\) on cifar-fs: "
        r"episode fingerprints differ for 5-way 1-shot seed 0: method run '' \(.*S\) has ffcifar-fs10, "
        r"baseline run '' \(.*CE\) has e0cifar-fs10",
    ) as info:
        compare([a, b])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(n_query=10), r"queries differ \(10 vs 15\)"),
        (dict(n_episodes=30), r"episodes differ \(30 vs 40\)"),
        (dict(seeds=(0, 1)), r"seeds differ \(\[0, 1\] vs \[0, 1, 2\]\)"),
        (dict(shots=(1,)), r"shots differ \(1 vs \[1, 5\]\)"),
        (dict(split="val"), r"split differ \(val vs test\)"),
    ],
)
def test_refuses_protocol_mismatch(tmp_path: Path, change: dict, message: str) -> None:
    a = save(tmp_path, "CE", episodes(noise_seed=1))
    b = save(tmp_path, "S", episodes(noise_seed=2, **change))
    with pytest.raises(ValueError, match=r"cannot pair 'S' .* with baseline 'CE' .* on cifar-fs: " + message):
        compare([a, b])


def test_refuses_a_method_lacking_baseline_episodes(tmp_path: Path) -> None:
    a = save(tmp_path, "CE", episodes(noise_seed=1))
    df = episodes(noise_seed=2)
    df.loc[(df["seed"] == 1) & (df["n_shot"] == 5) & (df["episode"] == 3), "episode"] = 99  # same count, other task
    b = save(tmp_path, "S", df)
    with pytest.raises(
        ValueError,
        match=r"the method's run '' \(.*S\) lacks 1 episode\(s\) other runs have "
        r"\(first: episode 3 of 5-way 5-shot seed 1\)",
    ):
        compare([a, b])


def test_refuses_without_a_shared_dataset_or_a_second_method(tmp_path: Path) -> None:
    a = save(tmp_path, "CE", episodes("cifar-fs", noise_seed=1))
    b = save(tmp_path, "S", episodes("fc100", noise_seed=2))
    with pytest.raises(ValueError, match="have no dataset in common"):
        compare([a, b])
    with pytest.raises(ValueError, match="at least two methods"):
        compare([a])


def test_rejects_bad_test_and_alpha(three: list[Path]) -> None:
    with pytest.raises(ValueError, match="test must be one of"):
        compare(three, test="welch")
    with pytest.raises(ValueError, match="alpha must be in"):
        compare(three, alpha=5)


# ----------------------------------------------------------------- CLI


def test_cli_compare_writes_csv(three: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cmp" / "compare.csv"
    args = ["compare", *map(str, three), "--baseline", "CE", "--test", "t", "--alpha", "0.01", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SCHaNe" in printed and "p_holm" in printed and "baseline: CE" in printed
    back = pd.read_csv(out)
    assert tuple(back.columns) == COMPARE_COLUMNS and len(back) == 4
    assert back["p_val"].to_numpy() == pytest.approx(compare(three)["p_val"].to_numpy())


def test_cli_compare_mismatch_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = save(tmp_path, "CE", episodes(noise_seed=1))
    b = save(tmp_path, "S", episodes(noise_seed=2, fingerprint="ff"))
    out = tmp_path / "x.csv"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot compare: error: cannot pair 'S'") and "fingerprints differ" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
