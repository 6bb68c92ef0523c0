"""Reports and figures, from run folders alone (read through ``nnlab.runs``): never
imports the engine or the experiments, so a report can be written anywhere the
folders are."""
