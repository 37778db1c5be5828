"""Analysis of finished runs (the paper's Figs. 1-5 and Table II); it reads run directories, it does not train.

records.py reads run outputs; information.py (mutual information), heatmaps.py (Figs. 2-4), easy_hard.py (Fig. 5),
curves.py (Fig. 1) and table2.py compute one result each; page.py renders HTML and report.py assembles the report.
"""
