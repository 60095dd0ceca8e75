"""Reading shards: input expansion, tar and Parquet readers, image checks, Arrow schemas."""
