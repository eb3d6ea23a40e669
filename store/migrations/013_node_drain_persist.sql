-- A clean stop marks its node's row stopped instead of deleting it, so
-- that a drain an operator set outlives a restart under the same NODE_ID
-- (it lasts until `teleconsult node undrain`). A stopped node is not
-- alive, however fresh its last heartbeat; its next heartbeat clears the
-- mark. Additive: nodes of the previous release ignore the column.
ALTER TABLE nodes ADD COLUMN stopped_at timestamptz;
