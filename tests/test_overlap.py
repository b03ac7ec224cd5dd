"""Pretraining overlap: counts against timm's synset lists and the vetted CIFAR-100 mapping."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fewshot.cli import main
from fewshot.data import class_names
from fewshot.data._splits import cifar100_fine_names, read_split_file
from fewshot.overlap import (
    LABEL_SETS,
    OVERLAP_COLUMNS,
    PretrainingOverlapWarning,
    label_set_of_model,
    label_set_synsets,
    overlap_footnote,
    pretraining_overlap,
    warn_overlap,
)

TIMM_INFO = Path(__import__("timm").__file__).parent / "data" / "_info"


def synsets(filename: str) -> set[str]:
    return set((TIMM_INFO / filename).read_text().split())


def test_label_sets_are_timms_lists() -> None:
    assert len(label_set_synsets("imagenet-1k")) == 1000
    assert len(label_set_synsets("imagenet-21k")) == 21843
    assert label_set_synsets("imagenet-1k") == synsets("imagenet_synsets.txt")
    for name in LABEL_SETS:
        assert label_set_synsets(name)
    with pytest.raises(ValueError, match="unknown pretraining label set 'imagenet-9k'; expected one of imagenet-1k"):
        label_set_synsets("imagenet-9k")


@pytest.mark.parametrize(
    ("dataset", "split", "n"),
    [
        ("mini-imagenet", "test", 20),
        ("mini-imagenet", "train", 64),
        ("tiered-imagenet", "test", 160),
    ],
)
def test_imagenet_splits_are_all_in_imagenet_1k(dataset: str, split: str, n: int) -> None:
    frame = pretraining_overlap(dataset, split, "imagenet-1k")
    assert list(frame.columns) == list(OVERLAP_COLUMNS)
    assert len(frame) == n and int(frame["in_pretraining"].sum()) == n
    assert set(frame["how"]) == {"wnid"}
    # independent: set intersection with timm's list
    assert len(set(class_names(dataset, split)) & synsets("imagenet_synsets.txt")) == n
    assert frame["matched"][0].startswith(frame["class"][0] + " ")


def test_mini_imagenet_matches_timms_own_mini_list() -> None:
    every = {c for s in ("train", "val", "test") for c in class_names("mini-imagenet", s)}
    assert every == synsets("mini_imagenet_synsets.txt")


def test_cifar_test_splits_against_imagenet_1k_by_name() -> None:
    fs = pretraining_overlap("cifar-fs", "test", "imagenet-1k")
    assert fs.loc[fs["in_pretraining"], "class"].tolist() == [
        "wardrobe",
        "leopard",
        "chimpanzee",
        "snail",
        "pickup_truck",
    ]
    fc = pretraining_overlap("fc100", "test", "imagenet-1k")
    assert fc.loc[fc["in_pretraining"], "class"].tolist() == [
        "beaver",
        "otter",
        "bee",
        "cockroach",
        "porcupine",
        "skunk",
    ]
    assert set(fs["how"][fs["in_pretraining"]]) == set(fc["how"][fc["in_pretraining"]]) == {"name"}


def test_cifar_homonyms_are_not_counted() -> None:
    frame = pd.concat([pretraining_overlap("fc100", s, "imagenet-1k") for s in ("train", "val", "test")])
    frame = frame.set_index("class")
    assert len(frame) == 100
    # ImageNet-1k's "mouse" is the computer mouse, its "plate" a main course, its "cup" a punch
    assert not frame.loc["mouse", "in_pretraining"] and not frame.loc["plate", "in_pretraining"]
    assert frame.loc["keyboard", "how"] == "synonym" and frame.loc["keyboard", "in_pretraining"]


@pytest.mark.parametrize(
    ("dataset", "split", "n_1k", "n_21k"),
    [
        ("cifar-fs", "train", 14, 59),
        ("cifar-fs", "val", 3, 15),
        ("cifar-fs", "test", 5, 18),
        ("fc100", "train", 10, 55),
        ("fc100", "val", 6, 20),
        ("fc100", "test", 6, 17),
    ],
)
def test_cifar_counts(dataset: str, split: str, n_1k: int, n_21k: int) -> None:
    assert int(pretraining_overlap(dataset, split, "imagenet-1k")["in_pretraining"].sum()) == n_1k
    assert int(pretraining_overlap(dataset, split, "imagenet-21k")["in_pretraining"].sum()) == n_21k


def test_cifar_mapping_is_consistent_with_timms_lemmas() -> None:
    lemmas = dict(line.split("\t", 1) for line in (TIMM_INFO / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    mapping = read_split_file("cifar100_wordnet.json")["classes"]
    assert sorted(mapping) == sorted(cifar100_fine_names())
    for name, entry in mapping.items():
        if entry["wnid"] is None:
            assert entry["how"] is None and entry["note"]
            continue
        names = [x.strip().lower() for x in lemmas[entry["wnid"]].split(",")]
        assert entry["lemmas"] == lemmas[entry["wnid"]]
        assert (entry["how"] == "name") == (name.replace("_", " ") in names), name
        if entry["how"] == "synonym":
            assert entry["note"], name


def test_label_set_of_model_reads_the_tag() -> None:
    assert label_set_of_model("resnet50.a1_in1k") == "imagenet-1k"
    assert label_set_of_model("vit_base_patch16_224.augreg_in21k") == "imagenet-21k"
    assert label_set_of_model("vit_base_patch16_224.augreg2_in21k_ft_in1k") == "imagenet-21k"
    assert label_set_of_model("conv4") is None


def test_warn_overlap_warns_once() -> None:
    with pytest.warns(PretrainingOverlapWarning, match="20 of the 20 mini-imagenet/test classes") as record:
        summary = warn_overlap("mini-imagenet", "test", "imagenet-1k")
    assert len(record) == 1 and summary["n_overlap"] == 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_overlap("digits", "test", "imagenet-1k") is None
        assert warn_overlap("mini-imagenet", "test", None) is None


def test_data_overlap_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.csv"
    assert (
        main(["data", "overlap", "cifar-fs", "--split", "test", "--pretrained-on", "imagenet-1k", "--out", str(out)])
        == 0
    )
    assert "5 of 20 cifar-fs/test classes are in imagenet-1k" in capsys.readouterr().out
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["class", "in_pretraining", "matched", "how"] and len(frame) == 20
    assert main(["data", "overlap", "cifar-fs", "--split", "nope", "--pretrained-on", "imagenet-1k"]) == 2
    assert "unknown split 'nope'" in capsys.readouterr().err


def test_extract_records_the_overlap_and_table_footnotes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # digits has no ImageNet classes: nothing is recorded, even with a label set
    from fewshot.pipeline import extract_to_file

    out = tmp_path / "f.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainingOverlapWarning)
        extract_to_file(
            out,
            dataset="digits",
            backbone="conv4",
            img_size=16,
            use_cache=False,
            progress=False,
            pretrained_on="imagenet-1k",
        )
    with np.load(out) as data:
        assert "pretraining_overlap" not in json.loads(str(data["manifest"]))
    import fewshot.pipeline

    seen = {"label_set": "imagenet-1k", "n_overlap": 1}
    monkeypatch.setattr(fewshot.pipeline, "warn_overlap", lambda d, s, ls: dict(seen, dataset=d, split=s, asked=ls))
    extract_to_file(
        out,
        dataset="digits",
        backbone="conv4",
        img_size=16,
        use_cache=False,
        progress=False,
        pretrained_on="imagenet-21k",
    )
    with np.load(out) as data:
        assert json.loads(str(data["manifest"]))["pretraining_overlap"]["asked"] == "imagenet-21k"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown pretraining label set"):
        extract_to_file(out, dataset="digits", backbone="conv4", pretrained_on="imagenet-2k")
    # a feature file whose manifest records an overlap, behind a results manifest
    record = {
        "label_set": "imagenet-1k",
        "dataset": "mini-imagenet",
        "split": "test",
        "n_classes": 20,
        "n_overlap": 20,
        "classes": [],
    }
    feats = tmp_path / "mini.npz"
    np.savez(feats, features=np.zeros((1, 1)), manifest=np.array(json.dumps({"pretraining_overlap": record})))
    res = tmp_path / "res"
    res.mkdir()
    (res / "manifest.json").write_text(json.dumps({"label": "ResNet-12 / CE", "features": {"path": str(feats)}}))
    assert overlap_footnote([res, tmp_path]) == (
        "Pretraining overlap: ResNet-12 / CE (mini-imagenet/test): 20/20 classes in imagenet-1k."
    )


def test_table_overlap_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fewshot.results import EPISODE_COLUMNS, write_results
    from fewshot.stats import summarize

    record = {
        "label_set": "imagenet-1k",
        "dataset": "mini-imagenet",
        "split": "test",
        "n_classes": 20,
        "n_overlap": 20,
        "classes": [],
    }
    dirs = []
    for label, shift, overlap in (("CE", 0.0, None), ("SCHaNe", 0.05, record)):
        feats = tmp_path / f"{label}.npz"
        np.savez(feats, manifest=np.array(json.dumps({} if overlap is None else {"pretraining_overlap": overlap})))
        rng = np.random.default_rng(0)
        rows = [
            dict(
                dataset="mini-imagenet",
                split="test",
                n_way=5,
                n_shot=1,
                n_query=15,
                seed=s,
                episode=e,
                accuracy=min(1.0, rng.uniform(0.4, 0.6) + shift),
                classifier="logreg",
                features_fingerprint="f",
                episodes_fingerprint=f"e{s}",
            )
            for s in (0, 1)
            for e in range(20)
        ]
        df = pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))
        dirs.append(
            write_results(
                tmp_path / label, df, summarize(df), {"label": label, "config": {}, "features": {"path": str(feats)}}
            )
        )
    out = tmp_path / "t.md"
    assert main(["table", *map(str, dirs), "--baseline", "CE", "--overlap-note", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.rstrip().endswith("Pretraining overlap: SCHaNe (mini-imagenet/test): 20/20 classes in imagenet-1k.")
    assert main(["table", *map(str, dirs), "--baseline", "CE", "--out", str(tmp_path / "plain.md")]) == 0
    assert "Pretraining overlap" not in (tmp_path / "plain.md").read_text()
