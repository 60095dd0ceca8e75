-- Histogram of caption length in words (buckets of 5 words; 50+ grouped).
SELECT least(floor(len(string_split(trim(caption), ' ')) / 5) * 5, 50)::INTEGER AS words_from, count(*) AS n
FROM samples
GROUP BY words_from
ORDER BY words_from;
