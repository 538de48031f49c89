-- One-shot runs (`POST /v1/run`, the compatibility APIs) are executions
-- with source `run`: their language in `language` (python, javascript,
-- shell, c, cpp, go) and the template they ran with, if any, here.
ALTER TABLE executions ADD COLUMN template TEXT;
