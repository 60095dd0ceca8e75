-- For each stage's keep flag: how many samples it keeps and drops.
SELECT * FROM stage_counts ORDER BY stage;
