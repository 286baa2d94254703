"""DVC stage evaluate@<dataset>: Score untrained, colour histogram, stage-1 and stage-3 models."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Score untrained, colour histogram, stage-1 and stage-3 models", "maskreid.pipeline.evaluate:evaluate_dataset")
