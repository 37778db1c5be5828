"""Analysis of finished runs (the paper's Figs. 1-5 and Table II); it reads run directories, it does not train.

records.py reads run outputs (through facegraph.rundir); information.py (mutual information), heatmaps.py (Figs. 2-4),
easy_hard.py (Fig. 5), curves.py (Fig. 1), table.py (Table II and the paired comparison), statistics.py (intervals,
McNemar), probe.py (linear probe) and verification.py (ROC, gates in verification) compute one result each; page.py
renders HTML and report.py assembles the report.
"""
