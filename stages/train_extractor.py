"""DVC stage train_extractor@<dataset>: Stage 1: train F with the triplet loss."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Stage 1: train F with the triplet loss", "maskreid.pipeline.train:train_stage1", distributed=True)
