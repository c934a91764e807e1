-- Token usage of a run (summed over its llm.chat nodes), as JSON.
ALTER TABLE executions ADD COLUMN usage TEXT;
