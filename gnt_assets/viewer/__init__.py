"""The map viewer (``make view``): a tile server over the STAC catalog of outputs and a MapLibre page.

It reads the catalog and the files it names; no pipeline imports it and it imports no pipeline.
"""
