"""DVC stage train_mask@<dataset>: Stage 2: train M with L_mask, F frozen."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Stage 2: train M with L_mask, F frozen", "maskreid.pipeline.train:train_stage2", distributed=True)
