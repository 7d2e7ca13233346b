-- MIL-STD-2525 affiliation of an entity (friend, hostile, neutral, unknown, pending): what
-- the console's symbols and the CoT gateway's types are drawn from. Our own fleet is friend.
ALTER TABLE entities ADD COLUMN affiliation TEXT NOT NULL DEFAULT 'friend';
