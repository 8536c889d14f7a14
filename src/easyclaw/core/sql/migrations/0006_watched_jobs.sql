-- Job events only for jobs someone follows. A NOTIFY makes its transaction
-- take a database-wide lock at commit (PostgreSQL queues notifications in
-- commit order), held through the commit's WAL flush: with a notification on
-- every claim and every completion, the workers' commits queued behind each
-- other, for long-polls and an operator that follow a few of the jobs. A
-- follower (a long-poll waiter, the operator's follower of a resource's job)
-- marks the job watched before it reads it; claims and completions notify only
-- watched jobs. Adding a column with a constant default rewrites nothing.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS watched boolean NOT NULL DEFAULT false;
