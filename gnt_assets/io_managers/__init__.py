"""IO managers: zarr regions, mmap tensors, tarballs, GeoParquet (DESIGN section 3)."""
