"""``camtrap-cloud train``: a head fitted on a backbone's embeddings of reviewed images.

The chain (docs/learning.md): labelled images (``ingest_source``, ``folder_source``) ->
the trap's own full-frame crop through the backbone (``embeddings``, cached by ``cache``) ->
a split by event or deployment (``split``) -> balanced classes (``balance``) -> a multinomial
logistic regression quantised as the trap applies it (``fit``) -> blank scores (``scores``)
calibrated on validation and compared with the serving model on test (``evaluate``) -> a
report (``report``) and a head pack (``pack_writer``). ``pipeline`` runs them in that order;
``commands`` is the command line.
"""
