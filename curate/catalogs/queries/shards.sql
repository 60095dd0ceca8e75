-- Per input shard: samples read, accepted and quarantined, and shard-level errors.
SELECT shard_id, shard, kind, read, accepted, quarantined, shard_errors
FROM shards
ORDER BY shard_id;
