-- Every input sample accounted for: read = kept + quarantined (+ dropped once stages select).
SELECT * FROM accounting;
