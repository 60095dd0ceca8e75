-- Histogram of the shorter image side (buckets of 32 px; 1024+ grouped) and the share of extreme aspect ratios.
SELECT least(floor(least(width, height) / 32) * 32, 1024)::INTEGER AS min_side_from,
       count(*) AS n,
       avg((greatest(width, height) / least(width, height) > 3)::INTEGER) AS share_aspect_over_3
FROM samples
GROUP BY min_side_from
ORDER BY min_side_from;
