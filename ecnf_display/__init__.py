"""What the studio, the Gradio demo and the notebooks show, built on the ``ecnf`` library.

``ecnf`` holds the ideas (networks, paths, couplings, losses, solvers, likelihoods, data,
training, checkpoints, metrics, evaluation, CLI) and imports no plotting or UI package. This
package holds what exists to present them, shared by every front end so that none keeps a
copy:

- :mod:`ecnf_display.figures`: plotly figures of 2D flows (trajectories, velocity fields,
  densities);
- :mod:`ecnf_display.pictures`: matplotlib scatters and pixel enlarging;
- :mod:`ecnf_display.playground`: fields on a grid, densities, predicted endpoints;
- :mod:`ecnf_display.labs`: straightness of trajectories, repeated Hutchinson estimates;
- :mod:`ecnf_display.cards`: model cards and result tables as Markdown;
- :mod:`ecnf_display.ablations`: the seed paper's ablation tables over shipped models;
- :mod:`ecnf_display.course`: the check cell that follows each notebook exercise.

Its extra dependencies (plotly, matplotlib) come with ``pip install ecnf[display]``. The
direction of imports is one way: ``ecnf_display`` imports ``ecnf``, never the reverse.
"""
