-- Groups of byte-identical images (same sha256), largest first.
SELECT sha256, count(*) AS copies, list(uid ORDER BY uid) AS uids
FROM samples
WHERE sha256 IS NOT NULL
GROUP BY sha256
HAVING count(*) > 1
ORDER BY copies DESC, sha256;
