"""DVC stage masks@<dataset>: Draw the mask figure (paper Fig. 1)."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Draw the mask figure (paper Fig. 1)", "maskreid.pipeline.masks:masks_figure")
