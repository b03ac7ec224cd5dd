"""Training replicates: run-level statistics, the level of every comparison, run identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from fewshot.report.compare import compare
from fewshot.results import EPISODE_COLUMNS, Results, read_results, write_results
from fewshot.run_stats import hierarchical_bootstrap, probability_of_improvement, run_test, runs_for_power
from fewshot.runs import check_run_name
from fewshot.stats import summarize

# ----------------------------------------------------------------- run_stats against SciPy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_tests_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = 0.6 + 0.01 * rng.normal(size=4), 0.59 + 0.02 * rng.normal(size=4)
    r = run_test(x, y, "paired")
    ref = st.ttest_rel(x, y)
    assert (r.statistic, r.pvalue, r.dof) == pytest.approx((ref.statistic, ref.pvalue, ref.df), rel=1e-12)
    assert (r.ci95_low, r.ci95_high) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-10)
    assert r.p_rank == pytest.approx(st.wilcoxon(x - y).pvalue)
    assert r.effect_size == pytest.approx((x - y).mean() / (x - y).std(ddof=1))
    y5 = np.append(y, 0.58)
    w = run_test(x, y5, "welch")
    ref = st.ttest_ind(x, y5, equal_var=False)
    assert (w.statistic, w.pvalue, w.dof) == pytest.approx((ref.statistic, ref.pvalue, ref.df), rel=1e-10)
    assert (w.ci95_low, w.ci95_high) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-10)
    assert w.p_rank == pytest.approx(st.mannwhitneyu(x, y5).pvalue)
    assert (w.sd_method, w.sd_baseline) == pytest.approx((x.std(ddof=1), y5.std(ddof=1)))


def test_run_test_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 runs, got 1"):
        run_test([0.5], [0.4, 0.5])
    with pytest.raises(ValueError, match="as many method runs as baseline runs, got 2 and 3"):
        run_test([0.5, 0.6], [0.4, 0.5, 0.6], "paired")
    with pytest.raises(ValueError, match="run test must be one of \\['paired', 'welch'\\], got 'z'"):
        run_test([0.5, 0.6], [0.4, 0.5], "z")


def test_probability_of_improvement_is_the_pairwise_win_rate() -> None:
    x, y = np.array([0.61, 0.60, 0.58]), np.array([0.59, 0.60, 0.57, 0.55])
    loop = np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y])
    assert probability_of_improvement(x, y) == pytest.approx(loop)
    assert probability_of_improvement(x, y) == pytest.approx(st.mannwhitneyu(x, y).statistic / (x.size * y.size))
    assert probability_of_improvement(y, y) == pytest.approx(0.5)


def test_hierarchical_bootstrap_is_reproducible_and_covers_both_levels() -> None:
    rng = np.random.default_rng(0)
    a = np.clip(0.6 + 0.02 * rng.normal(size=(3, 1)) + 0.1 * rng.normal(size=(3, 500)), 0, 1)
    b = np.clip(0.6 + 0.02 * rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(4, 500)), 0, 1)
    one = hierarchical_bootstrap(a, b, n_boot=500, seed=3)
    assert one == hierarchical_bootstrap(a, b, n_boot=500, seed=3)
    assert one != hierarchical_bootstrap(a, b, n_boot=500, seed=4)
    assert one.ci95_low < one.mean_diff < one.ci95_high
    assert one.mean_diff == pytest.approx(a.mean(axis=1).mean() - b.mean(axis=1).mean())
    assert 0 <= one.pi_ci95_low <= one.prob_improvement <= one.pi_ci95_high <= 1
    # wider than resampling episodes alone: the between-run variation enters the interval
    episodes_only = (0.1**2 / 1500 + 0.1**2 / 2000) ** 0.5 * 1.96
    assert (one.ci95_high - one.ci95_low) / 2 > 2 * episodes_only
    with pytest.raises(ValueError, match="n_boot must be an integer >= 100, got 10"):
        hierarchical_bootstrap(a, b, n_boot=10)


def test_runs_for_power_matches_textbook_values() -> None:
    assert runs_for_power(1.0, 1.0, alpha=0.05) == 17  # two-sample d = 1
    assert runs_for_power(0.5, 1.0, alpha=0.05, paired=True) == 34  # paired d_z = 0.5
    assert runs_for_power(0.5, 1.0, alpha=0.01) > runs_for_power(0.5, 1.0, alpha=0.05)
    assert runs_for_power(0.0, 1.0) is None
    assert runs_for_power(1e-6, 1.0) is None  # more than max_runs
    with pytest.raises(ValueError, match="sd > 0"):
        runs_for_power(0.1, 0.0)


# ----------------------------------------------------------------- compare at the run level


def replicate(
    run: str,
    *,
    run_effect: float,
    shift: float = 0.0,
    n_episodes: int = 300,
    seeds=(0, 1),
    noise_seed: int = 0,
    dataset: str = "cifar-fs",
    fingerprint: str = "e",
) -> pd.DataFrame:
    """One training run's per-episode rows: shared task difficulty + a run effect + noise."""
    noise = np.random.default_rng(noise_seed)
    frames = []
    for seed in seeds:
        difficulty = np.random.default_rng([seed, 99]).uniform(0.4, 0.8, n_episodes)
        acc = np.clip(difficulty + run_effect + shift + 0.05 * noise.normal(size=n_episodes), 0, 1)
        acc = np.round(acc * 75) / 75
        frames.append(
            pd.DataFrame(
                dict(
                    dataset=dataset,
                    split="test",
                    run=run,
                    n_way=5,
                    n_shot=1,
                    n_query=15,
                    seed=seed,
                    episode=np.arange(n_episodes),
                    accuracy=acc,
                    classifier="logreg",
                    features_fingerprint=f"f{run}",
                    episodes_fingerprint=f"{fingerprint}{seed}",
                )
            )
        )
    return pd.concat(frames, ignore_index=True).loc[:, list(EPISODE_COLUMNS)]


def in_memory(label: str, df: pd.DataFrame, name: str | None = None) -> Results:
    return Results(Path(name or f"/mem/{label}/{df['run'].iloc[0]}"), df, {"label": label})


def save(root: Path, label: str, df: pd.DataFrame) -> Path:
    return write_results(root / label / df["run"].iloc[0], df, summarize(df), {"label": label}).resolve()


def test_replicates_are_compared_at_the_run_level(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    effects = {m: 0.02 * rng.normal(size=3) for m in ("CE", "S")}
    paths = [
        save(
            tmp_path,
            m,
            replicate(f"seed-{i}", run_effect=effects[m][i], shift=0.03 * (m == "S"), noise_seed=10 * i + len(m)),
        )
        for m in ("CE", "S")
        for i in range(3)
    ]
    df = compare(paths, n_boot=300)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["level"] == "run" and row["run_test"] == "paired"
    assert (row["n_runs_method"], row["n_runs_baseline"], row["n_episodes"], row["n_seeds"]) == (3, 3, 600, 2)
    means = {
        m: np.array([read_results(p).episodes["accuracy"].mean() for p in paths if p.parent.name == m])
        for m in ("CE", "S")
    }
    ref = st.ttest_rel(means["S"], means["CE"])
    assert (row["T"], row["p_val"], row["dof"]) == pytest.approx((ref.statistic, ref.pvalue, 2))
    assert row["mean_diff"] == pytest.approx((means["S"] - means["CE"]).mean())
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx(tuple(ref.confidence_interval()))
    assert row["between_run_sd_method"] == pytest.approx(means["S"].std(ddof=1))
    assert row["between_run_sd_baseline"] == pytest.approx(means["CE"].std(ddof=1))
    assert row["prob_improvement"] == pytest.approx(probability_of_improvement(means["S"], means["CE"]))
    assert row["boot_ci95_low"] < row["mean_diff"] < row["boot_ci95_high"]
    assert row["power_effect"] == pytest.approx(abs(row["mean_diff"]))
    sd = (means["S"] - means["CE"]).std(ddof=1)
    assert row["runs_for_power"] == runs_for_power(row["mean_diff"], sd, alpha=0.01, paired=True)
    # reproducible bootstrap, and the seed matters
    again = compare(paths, n_boot=300)
    assert again["boot_ci95_low"].iloc[0] == row["boot_ci95_low"]
    assert compare(paths, n_boot=300, seed=5)["boot_ci95_low"].iloc[0] != row["boot_ci95_low"]
    # Welch when forced, or when the run names do not match one to one
    welch = compare(paths, run_test="welch", n_boot=0).iloc[0]
    ref = st.ttest_ind(means["S"], means["CE"], equal_var=False)
    assert welch["run_test"] == "welch" and welch["p_val"] == pytest.approx(ref.pvalue)
    assert np.isnan(welch["boot_ci95_low"])
    # power for a given effect
    target = compare(paths, effect=0.01, n_boot=0).iloc[0]
    assert target["power_effect"] == pytest.approx(0.01)
    assert target["runs_for_power"] == runs_for_power(0.01, sd, alpha=0.01, paired=True)


def test_unmatched_run_names_use_welch_and_paired_is_refused() -> None:
    ce = [in_memory("CE", replicate(f"seed-{i}", run_effect=0.01 * i, noise_seed=i)) for i in range(3)]
    s = [in_memory("S", replicate(f"s{i}", run_effect=0.01 * i, noise_seed=5 + i)) for i in range(2)]
    row = compare(ce + s, n_boot=0).iloc[0]
    assert row["run_test"] == "welch" and (row["n_runs_method"], row["n_runs_baseline"]) == (2, 3)
    with pytest.raises(
        ValueError, match=r"a paired run test needs the same run names on both sides, got \['s0', 's1'\]"
    ):
        compare(ce + s, run_test="paired", n_boot=0)


def test_one_run_on_either_side_is_the_checkpoint_level() -> None:
    ce = [in_memory("CE", replicate(f"seed-{i}", run_effect=0.01 * i, noise_seed=i)) for i in range(3)]
    s = [in_memory("S", replicate("seed-0", run_effect=0.0, noise_seed=9))]
    row = compare(ce + s).iloc[0]
    assert row["level"] == "checkpoint" and (row["n_runs_method"], row["n_runs_baseline"]) == (1, 3)
    a = s[0].episodes.sort_values(["seed", "episode"])["accuracy"].to_numpy()
    b = np.mean([r.episodes.sort_values(["seed", "episode"])["accuracy"].to_numpy() for r in ce], axis=0)
    assert row["p_val"] == pytest.approx(st.ttest_rel(a, b).pvalue)  # against the mean over the baseline's runs
    assert np.isnan(row["prob_improvement"]) and pd.isna(row["runs_for_power"])


def test_null_simulation_run_level_keeps_alpha_checkpoint_level_does_not() -> None:
    """Accuracy varies from run to run but not by method: the run-level test must reject at
    about alpha, the checkpoint-level test (one run each) far more often."""
    n_sim, alpha = 200, 0.05
    rng = np.random.default_rng(2026)
    frames: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for i in range(n_sim):  # one "dataset" per simulated comparison
        for label in ("CE", "S"):
            for r in range(3):
                frames.setdefault((label, r), []).append(
                    replicate(
                        f"seed-{r}",
                        run_effect=0.02 * rng.normal(),
                        n_episodes=100,
                        seeds=(0,),
                        noise_seed=int(rng.integers(1 << 30)),
                        dataset=f"sim{i}",
                    )
                )
    runs = {key: pd.concat(parts, ignore_index=True) for key, parts in frames.items()}

    def results(shift: float = 0.0, n_runs: int = 3, suffix: str = "") -> list[Results]:
        return [
            in_memory(
                label + suffix,
                df.assign(accuracy=np.clip(df["accuracy"] + shift * (label == "S"), 0, 1)),
                f"/mem/{label}{suffix}/{r}",
            )
            for (label, r), df in runs.items()
            if r < n_runs
        ]

    run_level = compare(results(), alpha=alpha, n_boot=0)
    checkpoint = compare(results(n_runs=1, suffix="-one"), alpha=alpha, n_boot=0)  # one run each
    assert len(run_level) == len(checkpoint) == n_sim
    assert (run_level["level"] == "run").all() and (checkpoint["level"] == "checkpoint").all()
    rate_run = float((run_level["p_val"] < alpha).mean())
    rate_ckpt = float((checkpoint["p_val"] < alpha).mean())
    se = (alpha * (1 - alpha) / n_sim) ** 0.5
    assert rate_run <= alpha + 2 * se
    assert rate_ckpt > 0.5  # "significant" differences between checkpoints of one objective
    detected = compare(results(shift=0.15), alpha=alpha, n_boot=0)  # a true effect
    assert float((detected["p_val"] < alpha).mean()) > 0.8


# ----------------------------------------------------------------- refusals and identity


def test_same_run_twice_is_refused_naming_both_directories(tmp_path: Path, run_cli) -> None:
    a = save(tmp_path / "a", "CE", replicate("seed-0", run_effect=0))
    b = save(tmp_path / "b", "CE", replicate("seed-0", run_effect=0.01))
    c = save(tmp_path, "S", replicate("seed-0", run_effect=0.02))
    status, out, err = run_cli("compare", a, b, c, "--out", tmp_path / "cmp.csv")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and str(a) in err and str(b) in err and "run 'seed-0'" in err
    assert not (tmp_path / "cmp.csv").exists()


def test_runs_with_different_episodes_are_refused(tmp_path: Path, run_cli) -> None:
    a0 = save(tmp_path, "CE", replicate("seed-0", run_effect=0))
    a1 = save(tmp_path, "CE", replicate("seed-1", run_effect=0, fingerprint="other"))
    b0 = save(tmp_path, "S", replicate("seed-0", run_effect=0))
    b1 = save(tmp_path, "S", replicate("seed-1", run_effect=0))
    status, out, err = run_cli("compare", a0, a1, b0, b1, "--out", tmp_path / "cmp.csv")
    assert status == 2 and err.count("\n") == 1
    assert "episode fingerprints differ" in err and "run 'seed-1'" in err
    assert not (tmp_path / "cmp.csv").exists()


def test_compare_cli_prints_the_level(tmp_path: Path, run_cli) -> None:
    paths = [
        save(tmp_path, m, replicate(f"seed-{i}", run_effect=0.01 * i, noise_seed=i + 3 * (m == "S")))
        for m in ("CE", "S")
        for i in range(2)
    ]
    status, out, err = run_cli("compare", *paths, "--bootstrap", "200", "--effect", "1")
    assert status == 0, err
    assert "level run" in out and "this tests the objectives" in out and "80% power" in out and "1.00 pp" in out
    status, out, _ = run_cli("compare", paths[0], paths[2])
    assert status == 0 and "level checkpoint" in out and "NOT whether the objective is better" in out
    status, _, err = run_cli("compare", *paths, "--effect", "0")
    assert status == 2 and "--effect must be" in err


@pytest.mark.parametrize("bad", ["a/b", "../x", ".hidden", "", "x" * 65, "a b"])
def test_bad_run_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="run name must be 1-64 letters"):
        check_run_name(bad)


def test_evaluate_records_the_run_and_refuses_bad_names(features_file: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "res"
    status, _, err = run_cli("evaluate", "--features", features_file, "--episodes", "20", "--out", out, "--run", "a/b")
    assert status == 2 and "run must be 1-64 letters" in err and not out.exists()
    status, _, err = run_cli(
        "evaluate", "--features", features_file, "--episodes", "20", "--out", out, "--run", "seed-7"
    )
    assert status == 0, err
    res = read_results(out)
    assert (res.episodes["run"] == "seed-7").all() and res.manifest["run"] == "seed-7"


def test_results_without_a_run_column_read_as_one_unnamed_run(tmp_path: Path) -> None:
    df = replicate("x", run_effect=0).drop(columns="run")
    out = tmp_path / "old"
    out.mkdir()
    import gzip

    (out / "per_episode.csv.gz").write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    (out / "manifest.json").write_text('{"label": "old"}')
    res = read_results(out)
    assert list(res.episodes.columns) == list(EPISODE_COLUMNS) and (res.episodes["run"] == "").all()


# ----------------------------------------------------------------- training replicates end to end


def test_finetune_seeds_trains_resumes_and_names_runs(tmp_path: Path, monkeypatch) -> None:
    from test_training import ColourSplit, tiny_config

    from fewshot.checkpoint import checkpoint_run, read_checkpoint_meta
    from fewshot.features import extract_cached, load_features
    from fewshot.training import finetune_seeds

    config = tiny_config(tmp_path / "runs", epochs=1)
    split = ColourSplit()
    first = finetune_seeds(config, [0, 1], split=split)
    assert [r.run_dir.name for r in first] == ["seed-0", "seed-1"]
    metas = [read_checkpoint_meta(r.best) for r in first]
    assert [checkpoint_run(m) for m in metas] == ["seed-0", "seed-1"]
    assert metas[0]["backbone"]["sha256"] != metas[1]["backbone"]["sha256"]  # the seed matters
    # a second call keeps the finished runs as they are and trains only the new seed
    before = (first[0].best / "backbone.safetensors").read_bytes()
    again = finetune_seeds(config, [1, 0, 2], split=split)
    assert [r.run_dir.name for r in again] == ["seed-1", "seed-0", "seed-2"]
    assert (first[0].best / "backbone.safetensors").read_bytes() == before
    # other settings in an existing run directory are refused
    with pytest.raises(ValueError, match="cannot resume .*seed-0 with a different config .*lr"):
        finetune_seeds(config.replace(lr=0.5), [0], split=split)
    for bad, message in (([], "at least one training seed"), ([1, 1], "must be distinct"), ([-1], "non-negative")):
        with pytest.raises(ValueError, match=message):
            finetune_seeds(config, bad, split=split)
    with pytest.raises(ValueError, match="conflicts with several seeds"):
        finetune_seeds(config.replace(run="mine"), [0], split=split)

    # the run name travels into the features file and its cache key
    from fewshot.checkpoint import load_checkpoint

    model, pp, _ = load_checkpoint(first[0].best)
    a, _ = extract_cached(model, split, tmp_path / "cache", preprocessing=pp, progress=False, run="seed-0")
    b, _ = extract_cached(model, split, tmp_path / "cache", preprocessing=pp, progress=False, run="seed-9")
    assert a != b and load_features(a).run == "seed-0" and load_features(b).run == "seed-9"


def test_cli_seeds_flag_and_extract_copies_the_run(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "runs"
    args = [
        "finetune",
        "--backbone",
        "conv4",
        "--dataset",
        "digits",
        "--img-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        out,
    ]
    status, _, err = run_cli(*args, "--seeds", "0", "--seed", "3")
    assert status == 2 and "--seeds conflicts with --resume and --seed" in err and not out.exists()
    status, stdout, err = run_cli(*args, "--seeds", "3")
    assert status == 0, err
    assert "seed-3:" in stdout and (out / "seed-3" / "best" / "checkpoint.json").is_file()
    feats = tmp_path / "f.npz"
    status, _, err = run_cli(
        "extract", "--checkpoint", out / "seed-3" / "best", "--dataset", "digits", "--no-progress", "--out", feats
    )
    assert status == 0, err
    with np.load(feats) as z:
        assert str(z["run"]) == "seed-3"
    res = tmp_path / "res"
    status, _, err = run_cli("evaluate", "--features", feats, "--episodes", "10", "--out", res)
    assert status == 0, err
    assert (read_results(res).episodes["run"] == "seed-3").all()
    status, _, err = run_cli(
        "extract",
        "--checkpoint",
        out / "seed-3" / "best",
        "--dataset",
        "digits",
        "--no-progress",
        "--run",
        "x/y",
        "--out",
        tmp_path / "g.npz",
    )
    assert status == 2 and "run must be 1-64 letters" in err and not (tmp_path / "g.npz").exists()
