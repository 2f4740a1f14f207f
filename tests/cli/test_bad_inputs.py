"""A corpus of bad inputs, tried as a new user would (issue 14).

Every case runs one ``torchslim`` command line on a malformed input and
asserts what a user must get:

* a non-zero exit (2: argparse usage errors and torchslim errors alike);
* no traceback: the case goes through ``torchslim.cli.main``, the function
  the installed ``torchslim`` script calls, so an unexpected exception fails
  the test with its traceback (it is a bug), and a few cases also run in a
  real subprocess (``python -m torchslim``) and check its stderr;
* one error message that names the input at fault and the fix (the case's
  key words, case-insensitive);
* nothing partial written: the workspace (inputs, ``--out`` targets, the
  working folder) is byte-for-byte and file-for-file the same afterwards, so
  an ``--out`` target stays absent or unchanged and no temp file is left.

The table is the corpus: ``Case(id, argv, words, code)``; ``{ws}`` in an
argument is the module's workspace (tiny models and data made once below).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchslim.cli import main

ART = "{ws}/art.safetensors"  # lenet300 for digits (input 1x8x8, 10 classes), metadata dataset=digits
ART28 = "{ws}/art28.safetensors"  # lenet300 for mnist (input 1x28x28)
NOMETA = "{ws}/nometa.safetensors"  # lenet300 for digits saved without a dataset in its metadata
OUTF = "{ws}/out/result.safetensors"  # an --out file that must never appear
OUTD = "{ws}/out/run"  # an --out folder that must never appear


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    words: tuple[str, ...]  # must all appear in the error message (case-insensitive)
    code: int = 2


def C(id: str, argv: str | list[str], *words: str, code: int = 2) -> Case:
    return Case(id, tuple(argv.split() if isinstance(argv, str) else argv), words, code)


RECIPE_OK = "model: lenet300\ndata: {dataset: digits, holdout: 100}\nstages:\n  - {kind: train, epochs: 1}\n"

RECIPES = {
    "invalid.yaml": "model: [lenet300\nstages: ",
    "list.yaml": "- a\n- b\n",
    "unknown_key.yaml": RECIPE_OK + "bogus: 1\n",
    "no_model.yaml": "data: {dataset: digits}\nstages: [{kind: train}]\n",
    "no_stages.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: []\n",
    "unknown_kind.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: prune.magic}]\n",
    "bad_type.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: train, epochs: three}]\n",
    "range.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: prune.unstructured, sparsity: 1.5}]\n",
    "neg_epochs.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: train, epochs: -2}]\n",
    "unknown_field.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: train, epochz: 1}]\n",
    "missing_artifact.yaml": "model: {artifact: nope.safetensors}\ndata: {dataset: digits}\nstages: [{kind: train}]\n",
    "unknown_zoo.yaml": "model: lenet999\ndata: {dataset: digits}\nstages: [{kind: train}]\n",
    "missing_data.yaml": "model: lenet300\ndata: {dataset: nope.npz}\nstages: [{kind: train}]\n",
    "unknown_data.yaml": "model: lenet300\ndata: {dataset: cifar99}\nstages: [{kind: train}]\n",
    "bad_measure.yaml": RECIPE_OK + "measure: {threads: 0}\n",
    "bad_holdout.yaml": "model: lenet300\ndata: {dataset: digits, holdout: -1}\nstages: [{kind: train}]\n",
    "bad_stage_name.yaml": "model: lenet300\ndata: {dataset: digits}\nstages: [{kind: train, name: 'a b'}]\n",
    "bad_baseline.yaml": RECIPE_OK + "baseline: nope\n",
    # an artifact for digits (1x8x8) on data of 5 features: must fail before any stage and write nothing
    "wrong_shape.yaml": "model: {artifact: {ws}/art.safetensors}\n"
                        "data: {dataset: {ws}/wrongshape.npz, holdout: 4}\nstages: [{kind: train, epochs: 1}]\n",
    "ok.yaml": RECIPE_OK,
}

CASES = [
    # ---------------------------------------------------------------- the command line itself
    C("unknown-verb", "shrink model", "invalid choice", "shrink"),
    C("threads-zero", "--threads 0 profile lenet300", "--threads", ">= 1"),
    C("threads-negative", "--threads -2 profile lenet300", "--threads", ">= 1"),
    # ---------------------------------------------------------------- train
    C("train-unknown-model", f"train lenet999 --dataset digits --out {OUTD}", "lenet999", "zoo model"),
    C("train-negative-epochs", f"train lenet300 --dataset digits --epochs -1 --out {OUTD}", "--epochs", ">= 0"),
    C("train-epochs-not-a-number", f"train lenet300 --dataset digits --epochs three --out {OUTD}", "--epochs",
      "'three' is not an integer"),
    C("train-zero-batch-size", f"train lenet300 --dataset digits --batch-size 0 --out {OUTD}", "--batch-size",
      ">= 1"),
    C("train-negative-lr", f"train lenet300 --dataset digits --lr -0.1 --out {OUTD}", "--lr", "> 0"),
    C("train-zero-max-steps", f"train lenet300 --dataset digits --max-steps-per-epoch 0 --out {OUTD}",
      "--max-steps-per-epoch", ">= 1"),
    C("train-out-is-a-file", "train lenet300 --dataset digits --out {ws}/afile", "--out", "afile", "not a folder"),
    C("train-out-under-a-file", "train lenet300 --dataset digits --out {ws}/afile/run", "--out", "afile",
      "is a file"),
    C("train-missing-data", f"train lenet300 --dataset {{ws}}/nope.npz --out {OUTD}", "nope.npz", "no such file"),
    C("train-artifact-wrong-shape", f"train {ART28} --dataset digits --epochs 1 --out {OUTD}", "--dataset digits",
      "1x8x8", "1x28x28", "made on (--dataset mnist)"),
    C("train-labels-out-of-range", f"train {ART} --dataset {{ws}}/labels_oob.npz --out {OUTD}", "labels_oob.npz",
      "labels go up to 14", "10 outputs", "relabel"),
    # ---------------------------------------------------------------- eval: artifacts
    C("auto-budget-not-a-number", "auto lenet300 --dataset digits --budget max_drop=x --out {ws}/auto1",
      "budget", "max_drop=x", "not a number"),
    C("auto-unknown-dataset", "auto lenet300 --dataset nosuch --out {ws}/auto2", "nosuch", "known"),
    C("auto-zero-trials", "auto lenet300 --dataset digits --trials 0 --out {ws}/auto3", "n_trials", "positive"),
    C("eval-missing-artifact", "eval {ws}/missing.safetensors --dataset digits", "missing.safetensors",
      "no such artifact", "check the path"),
    C("eval-truncated-artifact", "eval {ws}/trunc.safetensors --dataset digits", "trunc.safetensors",
      "truncated", "re-create"),
    C("eval-corrupted-artifact", "eval {ws}/corrupt.safetensors --dataset digits", "corrupt.safetensors",
      "checksum", "re-create"),
    C("eval-text-file-artifact", "eval {ws}/text.safetensors --dataset digits", "text.safetensors",
      "not a torchslim artifact", "torchslim.save"),
    C("eval-pickle-artifact", "eval {ws}/model.pt --dataset digits", "model.pt", "not a torchslim artifact",
      "torchslim.save"),
    C("eval-plain-safetensors", "eval {ws}/plain.safetensors --dataset digits", "plain.safetensors",
      "without torchslim metadata", "torchslim.save"),
    C("eval-newer-artifact", "eval {ws}/newer.safetensors --dataset digits", "newer.safetensors", "version 99",
      "upgrade torchslim"),
    C("eval-empty-folder", "eval {ws}/emptydir --dataset digits", "emptydir", "model.safetensors",
      "give a model file"),
    C("eval-run-folder-bad-report", "eval {ws}/badrun --dataset digits", "badrun", "report.json",
      "rerun"),
    C("eval-missing-import-path", "eval nosuchpkg.mod:factory --dataset digits", "nosuchpkg",
      "cannot import", "install it"),
    # ---------------------------------------------------------------- eval: data
    C("eval-wrong-shape", f"eval {ART28} --dataset digits", "--dataset digits", "1x8x8", "1x28x28",
      "made on (--dataset mnist)"),
    C("eval-wrong-shape-own-data", f"eval {ART} --dataset {{ws}}/wrongshape.npz", "wrongshape.npz",
      "shape 5 ", "1x8x8", "made on (--dataset digits)"),
    C("eval-labels-out-of-range", f"eval {ART} --dataset {{ws}}/labels_oob.npz", "labels_oob.npz",
      "labels go up to 14", "10 outputs"),
    C("eval-negative-labels", f"eval {ART} --dataset {{ws}}/labels_neg.npz", "labels_neg.npz", "0..k-1",
      "shift them"),
    C("eval-empty-data", f"eval {ART} --dataset {{ws}}/empty.npz", "empty.npz", "no examples", "add data"),
    C("eval-missing-data", f"eval {ART} --dataset {{ws}}/nope.npz", "nope.npz", "no such file"),
    C("eval-npz-wrong-keys", f"eval {ART} --dataset {{ws}}/wrongkeys.npz", "wrongkeys.npz",
      "name them x and y"),
    C("eval-npz-garbage", f"eval {ART} --dataset {{ws}}/garbage.npz", "garbage.npz", "not a readable .npz",
      "np.savez"),
    C("eval-nonnumeric-csv", f"eval {ART} --dataset {{ws}}/nonnumeric.csv", "nonnumeric.csv", "'abc'",
      "not a number"),
    C("eval-csv-no-header", f"eval {ART} --dataset {{ws}}/noheader.csv", "noheader.csv", "header row"),
    C("eval-csv-no-label-column", f"eval {ART} --dataset {{ws}}/nolabel.csv", "nolabel.csv", "label_column"),
    C("eval-empty-csv", f"eval {ART} --dataset {{ws}}/empty.csv", "empty.csv", "empty", "header row"),
    C("eval-bad-image", f"eval {ART} --dataset {{ws}}/badimg", "broken.png", "cannot read this image",
      "replace"),
    C("eval-loose-images", f"eval {ART} --dataset {{ws}}/looseimg", "looseimg", "class sub-folders"),
    C("eval-unknown-dataset", f"eval {ART} --dataset cifar99", "cifar99", "unknown data set"),
    C("eval-bad-data-option", f"eval {ART} --dataset {{ws}}/labels_oob.npz?test_fraction=2", "labels_oob.npz",
      "test_fraction", "must be in"),
    C("eval-unknown-data-option", f"eval {ART} --dataset {{ws}}/labels_oob.npz?bogus=1", "bogus", "allowed"),
    C("eval-single-npy", f"eval {ART} --dataset {{ws}}/x.npy", "x.npy", "no labels", "x.npy:labels.npy"),
    C("eval-zero-batch-size", f"eval {ART} --dataset digits --batch-size 0", "--batch-size", ">= 1"),
    C("eval-sentences-without-reference", f"eval {ART} --dataset {{ws}}/notes.txt", "notes.txt", "--reference"),
    # ---------------------------------------------------------------- profile
    C("profile-bad-input-shape", f"profile {ART} --input-shape 1,a", "--input-shape", "positive integers"),
    C("profile-wrong-input-shape", f"profile {ART} --input-shape 1,1,28,28", "--input-shape", "1x28x28",
      "1x8x8"),
    C("profile-zero-batch", f"profile {ART} --batch 0", "--batch", ">= 1"),
    C("profile-zero-repeats", f"profile {ART} --latency --repeats 0", "--repeats", ">= 1"),
    C("profile-corrupted-artifact", "profile {ws}/corrupt.safetensors", "corrupt.safetensors", "checksum"),
    # ---------------------------------------------------------------- run: recipes and overrides
    C("run-missing-recipe", f"run {{ws}}/nope.yaml --out {OUTD}", "nope.yaml", "no such recipe file"),
    C("run-invalid-yaml", f"run {{ws}}/invalid.yaml --out {OUTD}", "invalid.yaml", "not valid yaml"),
    C("run-recipe-not-a-mapping", f"run {{ws}}/list.yaml --out {OUTD}", "list.yaml", "mapping"),
    C("run-unknown-top-key", f"run {{ws}}/unknown_key.yaml --out {OUTD}", "bogus", "allowed keys"),
    C("run-no-model", f"run {{ws}}/no_model.yaml --out {OUTD}", "'model' is missing", "zoo name"),
    C("run-no-stages", f"run {{ws}}/no_stages.yaml --out {OUTD}", "stages", "at least one stage"),
    C("run-unknown-stage-kind", f"run {{ws}}/unknown_kind.yaml --out {OUTD}", "stages[0]", "prune.magic",
      "use one of"),
    C("run-bad-field-type", f"run {{ws}}/bad_type.yaml --out {OUTD}", "stages[0]", "epochs",
      "expected an integer"),
    C("run-sparsity-out-of-range", f"run {{ws}}/range.yaml --out {OUTD}", "stages[0]", "sparsity", "[0, 1)"),
    C("run-negative-epochs", f"run {{ws}}/neg_epochs.yaml --out {OUTD}", "stages[0]", "epochs", ">= 0"),
    C("run-unknown-stage-field", f"run {{ws}}/unknown_field.yaml --out {OUTD}", "epochz", "allowed fields"),
    C("run-missing-artifact", f"run {{ws}}/missing_artifact.yaml --out {OUTD}", "model.artifact",
      "nope.safetensors", "no such file"),
    C("run-unknown-zoo-model", f"run {{ws}}/unknown_zoo.yaml --out {OUTD}", "model", "lenet999",
      "unknown zoo model"),
    C("run-missing-data", f"run {{ws}}/missing_data.yaml --out {OUTD}", "data.dataset", "nope.npz",
      "no such file"),
    C("run-unknown-data", f"run {{ws}}/unknown_data.yaml --out {OUTD}", "data.dataset", "cifar99",
      "unknown data set"),
    C("run-bad-measure", f"run {{ws}}/bad_measure.yaml --out {OUTD}", "measure.threads", "positive"),
    C("run-negative-holdout", f"run {{ws}}/bad_holdout.yaml --out {OUTD}", "data.holdout", ">= 0"),
    C("run-bad-stage-name", f"run {{ws}}/bad_stage_name.yaml --out {OUTD}", "'a b'", "letters"),
    C("run-bad-baseline", f"run {{ws}}/bad_baseline.yaml --out {OUTD}", "baseline", "nope", "stages are"),
    C("run-wrong-shape-data", f"run {{ws}}/wrong_shape.yaml --out {OUTD}", "wrongshape.npz", "shape 5 ",
      "1x8x8", "reshape"),
    C("run-out-is-a-file", "run {ws}/ok.yaml --out {ws}/afile", "--out", "afile", "not a folder"),
    C("run-override-not-key-value", f"run {{ws}}/ok.yaml bogus --out {OUTD}", "'bogus'", "key=value"),
    C("run-override-stage-index", f"run {{ws}}/ok.yaml stages.9.epochs=1 --out {OUTD}", "stages.9.epochs",
      "out of range"),
    C("run-override-stage-name", f"run {{ws}}/ok.yaml stages.nope.epochs=1 --out {OUTD}", "'nope'",
      "stages are"),
    C("run-override-out-of-range", f"run {{ws}}/ok.yaml stages.0.epochs=-3 --out {OUTD}", "epochs", ">= 0"),
    C("run-override-bad-type", f"run {{ws}}/ok.yaml stages.0.lr=fast --out {OUTD}", "lr", "expected a number"),
    C("run-override-bad-yaml", ["run", "{ws}/ok.yaml", "stages.0.epochs=[1", "--out", OUTD], "stages.0.epochs",
      "not valid yaml"),
    C("run-override-empty-key", f"run {{ws}}/ok.yaml =3 --out {OUTD}", "'=3'", "dotted path"),
    C("run-override-into-a-number", f"run {{ws}}/ok.yaml stages.0.epochs.x=1 --out {OUTD}",
      "stages.0.epochs.x", "not a mapping"),
    C("run-override-unknown-key", f"run {{ws}}/ok.yaml colour=red --out {OUTD}", "colour", "allowed keys"),
    # ---------------------------------------------------------------- compare
    C("compare-missing-run", "compare {ws}/norun", "norun", "report.json", "torchslim run"),
    C("compare-bad-report", "compare {ws}/badrun", "badrun", "not a valid report", "rerun"),
    C("compare-html-under-a-file", "compare {ws}/badrun --html {ws}/afile/c.html", "--html", "afile",
      "is a file"),
    C("compare-html-is-a-folder", "compare {ws}/badrun --html {ws}/emptydir", "--html", "emptydir",
      "is a folder", "compare.html"),
    # ---------------------------------------------------------------- prune
    C("prune-sparsity-2", f"prune {ART} --dataset digits --sparsity 2 --out {OUTF}", "--sparsity", "[0, 1)"),
    C("prune-sparsity-negative", f"prune {ART} --dataset digits --sparsity -0.1 --out {OUTF}", "--sparsity",
      "[0, 1)"),
    C("prune-nm-not-n-colon-m", f"prune {ART} --dataset digits --nm 2-4 --out {OUTF}", "--nm", "n:m", "2:4"),
    C("prune-nm-n-above-m", f"prune {ART} --dataset digits --nm 4:2 --out {OUTF}", "--nm", "4:2", "0 < n <= m"),
    C("prune-zero-cycles", f"prune {ART} --dataset digits --cycles 0 --out {OUTF}", "--cycles", ">= 1"),
    C("prune-negative-finetune", f"prune {ART} --dataset digits --finetune-epochs -1 --out {OUTF}",
      "--finetune-epochs", ">= 0"),
    C("prune-negative-calib", f"prune {ART} --dataset digits --calib -5 --out {OUTF}", "--calib", ">= 1"),
    C("prune-agp-without-finetune", f"prune {ART} --dataset digits --agp --out {OUTF}", "--agp",
      "--finetune-epochs"),
    C("prune-out-is-a-folder", f"prune {ART} --dataset digits --out {{ws}}/emptydir", "--out", "emptydir",
      "is a folder"),
    C("prune-wrong-shape", f"prune {ART28} --dataset digits --out {OUTF}", "--dataset digits", "1x8x8",
      "1x28x28"),
    C("prune-truncated-artifact", f"prune {{ws}}/trunc.safetensors --dataset digits --out {OUTF}",
      "trunc.safetensors", "truncated"),
    # ---------------------------------------------------------------- sensitivity
    C("sensitivity-bad-sparsities", f"sensitivity {ART} --dataset digits --sparsities 0.5,abc --out {OUTD}",
      "--sparsities", "fractions"),
    C("sensitivity-sparsity-out-of-range", f"sensitivity {ART} --dataset digits --sparsities 0.5,1.5 "
      f"--out {OUTD}", "--sparsities", "1.5 is not in (0, 1)"),
    C("sensitivity-target-out-of-range", f"sensitivity {ART} --dataset digits --target 2 --out {OUTD}",
      "--target", "(0, 1)"),
    C("sensitivity-out-is-a-file", f"sensitivity {ART} --dataset digits --out {{ws}}/afile", "--out", "afile",
      "not a folder"),
    C("sensitivity-wrong-shape", f"sensitivity {ART28} --dataset digits --out {OUTD}", "--dataset digits",
      "1x8x8", "1x28x28"),
    # ---------------------------------------------------------------- distill
    C("distill-bad-kwargs-json", ["distill", "--teacher", ART, "--student", "lenet300", "--dataset", "digits",
                                  "--student-kwargs", "{bad", "--out", OUTF], "--student-kwargs", "json"),
    C("distill-kwargs-not-an-object", ["distill", "--teacher", ART, "--student", "lenet300", "--dataset",
                                       "digits", "--student-kwargs", "[30]", "--out", OUTF], "--student-kwargs",
      "json object"),
    C("distill-zero-temperature", f"distill --teacher {ART} --student lenet300 --dataset digits --temperature 0 "
      f"--out {OUTF}", "--temperature", "> 0"),
    C("distill-alpha-out-of-range", f"distill --teacher {ART} --student lenet300 --dataset digits --alpha 1.5 "
      f"--out {OUTF}", "--alpha", "[0, 1]"),
    C("distill-negative-epochs", f"distill --teacher {ART} --student lenet300 --dataset digits --epochs -1 "
      f"--out {OUTF}", "--epochs", ">= 0"),
    C("distill-untrained-zoo-teacher", f"distill --teacher lenet300 --student lenet300 --dataset digits "
      f"--out {OUTF}", "--teacher", "--teacher-epochs"),
    C("distill-missing-teacher", f"distill --teacher {{ws}}/missing.safetensors --student lenet300 "
      f"--dataset digits --out {OUTF}", "missing.safetensors", "no such artifact"),
    C("distill-teacher-wrong-shape", f"distill --teacher {ART28} --student lenet300 --dataset digits "
      f"--out {OUTF}", "--teacher", "1x8x8", "1x28x28"),
    C("distill-out-under-a-file", f"distill --teacher {ART} --student lenet300 --dataset digits "
      "--out {ws}/afile/s.safetensors", "--out", "afile", "is a file"),
    # ---------------------------------------------------------------- decompose
    C("decompose-keep-zero", f"decompose {ART} --method svd --keep 0 --out {OUTF}", "--keep", "(0, 1]"),
    C("decompose-keep-above-one", f"decompose {ART} --method svd --keep 1.5 --out {OUTF}", "--keep", "(0, 1]"),
    C("decompose-unknown-method", f"decompose {ART} --method qr --out {OUTF}", "--method", "invalid choice"),
    C("decompose-zero-depth-multiplier", f"decompose {ART} --method separable --depth-multiplier 0 --out {OUTF}",
      "--depth-multiplier", ">= 1"),
    C("decompose-finetune-without-dataset", f"decompose {ART} --method svd --finetune-epochs 1 --out {OUTF}",
      "--finetune-epochs", "--dataset"),
    C("decompose-unknown-layer", f"decompose {ART} --method svd --layers fc9 --out {OUTF}", "--layers", "fc9",
      "fc1"),
    C("decompose-wrong-shape", f"decompose {ART28} --method svd --dataset digits --out {OUTF}",
      "--dataset digits", "1x8x8", "1x28x28"),
    C("decompose-out-under-a-file", f"decompose {ART} --method svd --out {{ws}}/afile/d.safetensors", "--out",
      "afile", "is a file"),
    # ---------------------------------------------------------------- quantize
    C("quantize-bits-0", f"quantize {ART} --dataset digits --method ptq --bits 0 --out {OUTF}", "--bits",
      "1..8"),
    C("quantize-bits-16", f"quantize {ART} --dataset digits --method ptq --bits 16 --out {OUTF}", "--bits",
      "1..8"),
    C("quantize-ptq-bits-1", f"quantize {ART} --dataset digits --method ptq --bits 1 --out {OUTF}", "--bits 1",
      "between 2 and 8"),
    C("quantize-act-bits-1", f"quantize {ART} --dataset digits --method ptq --act-bits 1 --out {OUTF}",
      "--act-bits", "2..8"),
    C("quantize-negative-group-size", f"quantize {ART} --dataset digits --method weight-only --group-size -1 "
      f"--out {OUTF}", "--group-size", ">= 0"),
    C("quantize-zero-calib", f"quantize {ART} --dataset digits --method ptq --calib 0 --out {OUTF}", "--calib",
      ">= 1"),
    C("quantize-negative-epochs", f"quantize {ART} --dataset digits --method qat --epochs -1 --out {OUTF}",
      "--epochs", ">= 0"),
    C("quantize-qat-calib-takes-everything", f"quantize {ART} --dataset digits --method qat --calib 5000 "
      f"--out {OUTF}", "--calib 5000", "nothing to fine-tune", "smaller --calib"),
    C("quantize-zero-lr", f"quantize {ART} --dataset digits --method qat --lr 0 --out {OUTF}", "--lr", "> 0"),
    C("quantize-avg-bits-below-candidates", f"quantize {ART} --dataset digits --method mixed --avg-bits 1 "
      f"--out {OUTF}", "--avg-bits", "smallest candidate"),
    C("quantize-kmeans-bits-9", f"quantize {ART} --dataset digits --method kmeans --bits 9 --out {OUTF}",
      "--bits", "1..8"),
    C("quantize-wrong-shape", f"quantize {ART28} --dataset digits --method ptq --out {OUTF}", "--dataset digits",
      "1x8x8", "1x28x28"),
    C("quantize-out-is-a-folder", f"quantize {ART} --dataset digits --method ptq --out {{ws}}/emptydir",
      "--out", "emptydir", "is a folder"),
    C("quantize-out-existing-unchanged", f"quantize {ART} --dataset digits --method ptq --bits 0 "
      "--out {ws}/keep.safetensors", "--bits", "1..8"),
    C("quantize-newer-artifact", f"quantize {{ws}}/newer.safetensors --dataset digits --method ptq --out {OUTF}",
      "version 99", "upgrade torchslim"),
    # ---------------------------------------------------------------- export
    C("export-static-without-dataset", f"export {NOMETA} --int8 static --out {{ws}}/out/m.onnx", "--dataset",
      "1x8x8", "calibrat"),
    C("export-static-wrong-dataset", f"export {ART28} --int8 static --dataset digits --out {{ws}}/out/m.onnx",
      "--dataset digits", "1x8x8", "1x28x28"),
    C("export-smooth-without-dynamic", f"export {ART} --smooth 0.5 --out {{ws}}/out/m.onnx", "--smooth",
      "--int8 dynamic"),
    C("export-smooth-out-of-range", f"export {ART} --int8 dynamic --smooth 1.5 --out {{ws}}/out/m.onnx",
      "--smooth", "[0, 1]"),
    C("export-zero-calib", f"export {ART} --int8 static --calib 0 --out {{ws}}/out/m.onnx", "--calib", ">= 1"),
    C("export-negative-keep-float", f"export {ART} --int8 dynamic --keep-float -1 --out {{ws}}/out/m.onnx",
      "--keep-float", ">= 0"),
    C("export-out-is-a-folder", f"export {ART} --out {{ws}}/emptydir", "--out", "emptydir", "is a folder"),
    C("export-out-under-a-file", f"export {ART} --out {{ws}}/afile/m.onnx", "--out", "afile", "is a file"),
    C("export-folder-artifact", "export {ws}/emptydir --out {ws}/out/m.onnx", "emptydir", "model.safetensors"),
    # ---------------------------------------------------------------- bench
    C("bench-zero-batch", f"bench {ART} --batch 0", "--batch", ">= 1"),
    C("bench-zero-repeats", f"bench {ART} --repeats 0", "--repeats", ">= 1"),
    C("bench-zero-threads", f"bench {ART} --threads 0", "--threads", ">= 1"),
    C("bench-negative-warmup", f"bench {ART} --warmup -1", "--warmup", ">= 0"),
    C("bench-missing-onnx", "bench {ws}/missing.onnx", "missing.onnx", "no such onnx file"),
    C("bench-corrupted-onnx", "bench {ws}/bad.onnx", "bad.onnx", "not a readable onnx", "re-export"),
    C("bench-truncated-artifact", "bench {ws}/trunc.safetensors", "trunc.safetensors", "truncated"),
    C("bench-against-missing", f"bench {ART} --against {{ws}}/missing.safetensors", "missing.safetensors",
      "no such artifact"),
    # ---------------------------------------------------------------- prune-structured
    C("prune-structured-ratio-1.5", f"prune-structured {ART} --dataset digits --ratio 1.5 --out {OUTF}",
      "--ratio", "[0, 1)"),
    C("prune-structured-negative-ratio", f"prune-structured {ART} --dataset digits --ratio -0.5 --out {OUTF}",
      "--ratio", "[0, 1)"),
    C("prune-structured-zero-round-to", f"prune-structured {ART} --dataset digits --round-to 0 --out {OUTF}",
      "--round-to", ">= 1"),
    C("prune-structured-negative-finetune", f"prune-structured {ART} --dataset digits --finetune-epochs -2 "
      f"--out {OUTF}", "--finetune-epochs", ">= 0"),
    C("prune-structured-calib-too-big", f"prune-structured {ART} --dataset digits --calib 100000 --out {OUTF}",
      "--calib 100000", "smaller --calib"),
    C("prune-structured-unknown-importance", f"prune-structured {ART} --dataset digits --importance magic "
      f"--out {OUTF}", "--importance", "invalid choice"),
    C("prune-structured-wrong-shape", f"prune-structured {ART28} --dataset digits --calib 100 --out {OUTF}",
      "--dataset digits", "1x8x8", "1x28x28"),
    C("prune-structured-out-under-a-file", f"prune-structured {ART} --dataset digits "
      "--out {ws}/afile/p.safetensors", "--out", "afile", "is a file"),
    # ---------------------------------------------------------------- encode
    C("encode-zero-index-bits", f"encode {ART} {{ws}}/out/m.tslim --index-bits 0", "--index-bits", "1..12"),
    C("encode-target-is-a-folder", f"encode {ART} {{ws}}/emptydir", "out", "emptydir", "is a folder"),
    C("encode-target-under-a-file", f"encode {ART} {{ws}}/afile/m.tslim", "out", "afile", "is a file"),
    C("encode-corrupted-artifact", "encode {ws}/corrupt.safetensors {ws}/out/m.tslim", "corrupt.safetensors",
      "checksum"),
    C("encode-missing-model", "encode {ws}/missing.safetensors {ws}/out/m.tslim", "missing.safetensors",
      "no such artifact"),
]

# end to end through a real process: the installed entry point, stderr as a user sees it
SUBPROCESS = ["eval-wrong-shape", "quantize-bits-0", "encode-target-under-a-file"]


def test_corpus_is_large_and_covers_every_verb():
    from torchslim.cli import COMMANDS

    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 60
    verbs = {next(a for a in c.argv if not a.startswith("-") and not a[0].isdigit()) for c in CASES}
    assert set(COMMANDS) <= verbs, sorted(set(COMMANDS) - verbs)


# ---------------------------------------------------------------- the workspace
def _png(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), value, np.uint8), mode="L").save(path)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from torchslim.artifact import save
    from torchslim.zoo import build_model

    ws = tmp_path_factory.mktemp("bad_inputs")
    (ws / "cwd").mkdir()
    (ws / "emptydir").mkdir()
    (ws / "afile").write_text("an ordinary file\n")
    torch.manual_seed(0)
    save(build_model("lenet300", dataset="digits"), ws / "art.safetensors", metadata={"dataset": "digits"})
    save(build_model("lenet300", dataset="digits"), ws / "nometa.safetensors")
    save(build_model("lenet300", dataset="mnist"), ws / "art28.safetensors", metadata={"dataset": "mnist"})
    raw = (ws / "art.safetensors").read_bytes()
    (ws / "keep.safetensors").write_bytes(raw)
    (ws / "trunc.safetensors").write_bytes(raw[: len(raw) * 3 // 5])
    bad = bytearray(raw)
    bad[-64:] = bytes(b ^ 0xFF for b in bad[-64:])
    (ws / "corrupt.safetensors").write_bytes(bytes(bad))
    (ws / "text.safetensors").write_text("this is not a model, it is a note\n")
    torch.save({"w": torch.zeros(3)}, ws / "model.pt")
    st_save_path = ws / "plain.safetensors"
    st_save_path.write_bytes(st_save({"w": torch.zeros(3)}))
    with safe_open(str(ws / "art.safetensors"), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header["torchslim"])
    meta["format_version"] = 99
    header["torchslim"] = json.dumps(meta, sort_keys=True)
    (ws / "newer.safetensors").write_bytes(st_save(tensors, metadata=header))
    (ws / "bad.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 3)
    (ws / "badrun").mkdir()
    (ws / "badrun" / "report.json").write_text("{not json")
    # data
    g = np.random.default_rng(0)
    y = np.arange(40) % 10
    np.savez(ws / "wrongshape.npz", x=g.random((40, 5), dtype=np.float32), y=y)
    # 15 classes, two examples each for the last five: the test split holds labels up to 9 only, the data set 14
    np.savez(ws / "labels_oob.npz", x=g.random((40, 1, 8, 8), dtype=np.float32), y=np.arange(40) % 15)
    np.savez(ws / "labels_neg.npz", x=g.random((40, 1, 8, 8), dtype=np.float32), y=y - 1)
    np.savez(ws / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, np.int64))
    np.savez(ws / "wrongkeys.npz", inputs=np.zeros((4, 64), np.float32), targets=np.zeros(4, np.int64))
    (ws / "garbage.npz").write_bytes(b"PK\x03\x04 this zip is cut short")
    np.save(ws / "x.npy", np.zeros((4, 64), np.float32))
    (ws / "nonnumeric.csv").write_text("f1,f2,label\n0.1,0.2,1\nabc,0.3,0\n")
    (ws / "noheader.csv").write_text("0.1,0.2,1\n0.3,0.4,0\n")
    (ws / "nolabel.csv").write_text("f1,f2\n0.1,0.2\n")
    (ws / "empty.csv").write_text("")
    (ws / "notes.txt").write_text("a sentence\nanother sentence\n")
    for c in ("a", "b"):
        (ws / "badimg" / c).mkdir(parents=True)
        for i in range(3):
            _png(ws / "badimg" / c / f"{i}.png", 40 * i)
    (ws / "badimg" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (ws / "looseimg").mkdir()
    (ws / "looseimg" / "sub").mkdir()
    _png(ws / "looseimg" / "1.png", 10)
    for name, text in RECIPES.items():
        (ws / name).write_text(text.replace("{ws}", str(ws)))
    return ws


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: (is_dir, size, mtime_ns, first bytes' hash)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = ("dir",)
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = ("file", st.st_size, st.st_mtime_ns)
    return out


def _argv(case: Case, ws: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)) for a in case.argv]


def _run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """``torchslim.cli.main(argv)`` as the console script runs it: the exit
    code returned or raised (argparse), stdout and stderr captured. Any other
    exception propagates: an unexpected exception is a bug, not a message."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _check(case: Case, code: int, stderr: str, before: dict, after: dict) -> None:
    assert "Traceback (most recent call last)" not in stderr, stderr
    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("torchslim") and "error:" in line]
    assert len(errors) == 1, f"expected one error line, got {len(errors)}:\n{stderr}"
    message = errors[0].lower()
    missing = [w for w in case.words if w.lower() not in message]
    assert not missing, f"the message lacks {missing}: {errors[0]}"
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"written: {added}, removed: {removed}, changed: {changed}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ws: Path, real_processes, monkeypatch):
    monkeypatch.chdir(ws / "cwd")
    before = _snapshot(ws)
    code, _, stderr = _run_in_process(_argv(case, ws))
    _check(case, code, stderr, before, _snapshot(ws))


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def real_processes(ws, tmp_path_factory):
    """The SUBPROCESS cases, started together when the corpus starts (so they
    overlap with the in-process cases), in their own copy of the workspace."""
    import shutil

    sub = tmp_path_factory.mktemp("bad_inputs_subprocess") / "ws"
    shutil.copytree(ws, sub)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    cases = {c.id: c for c in CASES}
    before = _snapshot(sub)
    procs = {cid: subprocess.Popen([sys.executable, "-m", "torchslim", *_argv(cases[cid], sub)], cwd=sub / "cwd",
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cid in SUBPROCESS}
    done: dict = {}

    def results() -> tuple[dict, dict, dict]:
        """{case id: (exit code, stderr)}, and the workspace before and after them all."""
        if not done:
            for cid, p in procs.items():
                _, err = p.communicate(timeout=300)
                done[cid] = (p.returncode, err)
            done["after"] = _snapshot(sub)
        return done, before, done["after"]

    yield results
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.mark.parametrize("cid", SUBPROCESS)
def test_bad_input_in_a_real_process(cid, real_processes):
    done, before, after = real_processes()
    code, stderr = done[cid]
    _check(next(c for c in CASES if c.id == cid), code, stderr, before, after)
