"""Where each stage reads and writes, relative to the project root (the same names dvc.yaml declares)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetPaths:
    dataset: str
    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw" / self.dataset

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared" / self.dataset

    @property
    def extracted(self) -> Path:
        """Where prepare extracts an archive: inside its DVC output, so DVC knows the files the manifest names."""
        return self.prepared / "extracted"

    @property
    def silhouettes(self) -> Path:
        """The generated set's person silhouettes (1-bit PNGs named as the images, `synthetic` only): where M's
        hidden pixels fall, person or background."""
        return self.prepared / "silhouettes"

    @property
    def manifest(self) -> Path:
        return self.prepared / "manifest.csv"

    @property
    def decoded(self) -> Path:
        """Decoded, resized uint8 images per split and size, shared by the stages (not tracked by DVC: a cache
        keyed by the image files' names, sizes and modification times)."""
        return self.root / "data" / "decoded" / self.dataset

    def checkpoint(self, stage: int) -> Path:
        return self.root / "models" / self.dataset / f"stage{stage}.pt"

    def progress(self, stage: int) -> Path:
        """The in-progress state of a training stage, for resuming after a kill. Not a DVC output: DVC leaves
        it alone when the stage re-runs, and a fresh clone that pulled finished results does not lack it."""
        return self.root / "models" / self.dataset / f"stage{stage}.progress.pt"

    def live(self, stage: int) -> Path:
        """dvclive's folder for a training stage: metrics.json (latest values) and plots/metrics/*.tsv."""
        return self.root / "dvclive" / self.dataset / f"stage{stage}"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / f"{self.dataset}.json"

    @property
    def details(self) -> Path:
        """Everything about an evaluation that is not a number to compare (not a DVC metric)."""
        return self.root / "metrics" / f"{self.dataset}.details.json"

    @property
    def queries(self) -> Path:
        """Per query and model: AP and first true-match rank (what `maskreid compare` resamples)."""
        return self.root / "metrics" / f"{self.dataset}.queries.csv"

    @property
    def failure_page(self) -> Path:
        """The final model's worst and random queries with their ranked lists (static HTML)."""
        return self.root / "plots" / "failures" / f"{self.dataset}.html"

    @property
    def cmc(self) -> Path:
        return self.root / "plots" / "cmc" / f"{self.dataset}.csv"

    @property
    def ranked_lists(self) -> Path:
        return self.root / "plots" / "ranked" / f"{self.dataset}.png"

    @property
    def embedding_figure(self) -> Path:
        return self.root / "plots" / "embeddings" / f"{self.dataset}.png"

    @property
    def onnx(self) -> Path:
        return self.root / "models" / self.dataset / "stage3.onnx"

    @property
    def mask_figure(self) -> Path:
        return self.root / "plots" / "masks" / f"{self.dataset}.png"


def cross_metrics_path(name: str, root: Path = Path(".")) -> Path:
    """cross_evaluate@<name>'s metrics: F trained on one dataset, scored on another's test split."""
    return root / "metrics" / "cross" / f"{name}.json"
