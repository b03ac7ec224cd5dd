"""Accuracy plots: headless PNG/PDF written atomically, one panel per dataset and shot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fewshot.cli import main
from fewshot.report.plots import plot_results
from fewshot.report.tables import table_frame
from fewshot.results import EPISODE_COLUMNS, write_results
from fewshot.stats import summarize


def save(root: Path, label: str, dataset: str, shift: int, noise_seed: int) -> Path:
    noise = np.random.default_rng(noise_seed)
    rows = []
    for shot in (1, 5):
        for seed in (0, 1, 2):
            correct = np.clip(
                np.random.default_rng([seed, shot]).integers(30, 70, 30) + shift + noise.integers(-3, 4, 30), 0, 75
            )
            rows += [
                dict(
                    dataset=dataset,
                    split="test",
                    n_way=5,
                    n_shot=shot,
                    n_query=15,
                    seed=seed,
                    episode=e,
                    accuracy=c / 75,
                    classifier="logreg",
                    features_fingerprint="f",
                    episodes_fingerprint=f"e{dataset}{shot}{seed}",
                )
                for e, c in enumerate(correct)
            ]
    df = pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))
    return write_results(root / f"{label}-{dataset}", df, summarize(df), {"label": label, "config": {}})


@pytest.fixture
def dirs(tmp_path: Path) -> list[Path]:
    return [
        save(tmp_path, "ResNet-12 / CE", "cifar-fs", 0, 1),
        save(tmp_path, "ResNet-12 / CE", "fc100", -10, 1),
        save(tmp_path, "ResNet-12 / SCHaNe", "cifar-fs", 3, 2),
        save(tmp_path, "ResNet-12 / SCHaNe", "fc100", -8, 2),
    ]


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF")])
def test_plot_writes_png_and_pdf(dirs: list[Path], tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / "figs" / f"acc{suffix}"
    assert plot_results(dirs, out) == out
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 5000
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_png_has_one_panel_per_dataset_and_shot(dirs: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    out = plot_results(dirs, tmp_path / "acc.png", dpi=50)
    width, height = Image.open(out).size
    assert width > height * 0.8  # 2 shot columns; 2 dataset rows of 2 methods each
    one = plot_results(dirs[:1] + dirs[2:3], tmp_path / "one.png", dpi=50)  # a single dataset row
    assert Image.open(one).size[1] < height


def test_plot_rejects_bad_extension_and_order(dirs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in .png or .pdf, got 'acc.svg'"):
        plot_results(dirs, tmp_path / "acc.svg")
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['X'\] in order"):
        plot_results(dirs, tmp_path / "acc.png", order=["X"])


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (
            ["ResNet-12 / SCHaNe", "ResNet-12 / SCHaNe"],
            r"^order names row\(s\) \['ResNet-12 / SCHaNe'\] more than once, got order=\['ResNet-12 / SCHaNe', 'ResNet-12 / SCHaNe'\]$",
        ),
        (["X"], r"^unknown label\(s\) \['X'\] in order; the rows are \['ResNet-12 / CE', 'ResNet-12 / SCHaNe'\]$"),
    ],
    ids=["repeated", "unknown"],
)
def test_plot_and_table_check_order_alike(dirs: list[Path], tmp_path: Path, order: list[str], message: str) -> None:
    """One validator: a repeated or unknown label is refused by both, with the same one-line error."""
    with pytest.raises(ValueError, match=message) as plot_error:
        plot_results(dirs, tmp_path / "acc.png", order=order)
    with pytest.raises(ValueError, match=message) as table_error:
        table_frame(dirs, baseline="ResNet-12 / CE", order=order)
    assert str(plot_error.value) == str(table_error.value) and "\n" not in str(plot_error.value)
    assert not (tmp_path / "acc.png").exists()


def test_cli_plot(dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "acc.png"
    assert main(["plot", *map(str, dirs), "--order", "ResNet-12 / SCHaNe", "--out", str(out)]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out
    twice = tmp_path / "twice.png"
    assert main(["plot", *map(str, dirs), "--order", "ResNet-12 / CE", "ResNet-12 / CE", "--out", str(twice)]) == 2
    assert "fewshot plot: error: order names row(s) ['ResNet-12 / CE'] more than once" in capsys.readouterr().err
    assert not twice.exists()
    assert main(["plot", *map(str, dirs), "--out", str(tmp_path / "acc.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot plot: error: plot output must end in .png or .pdf") and "Traceback" not in err
