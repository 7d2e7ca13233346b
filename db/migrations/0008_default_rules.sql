-- The built-in offline, low-battery and threat alerts are default rules of the rules engine:
-- rows of alert_rules marked by ``builtin`` (the kind they stand for). Seeded here with the
-- settings' default thresholds; the evaluator sets an untouched default rule's threshold from
-- OVERWATCH_OFFLINE_AFTER / OVERWATCH_BATTERY_ALERT_PERCENT when it starts.
ALTER TABLE alert_rules ADD COLUMN builtin TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX idx_alert_rules_builtin ON alert_rules(builtin) WHERE builtin != '';
INSERT OR IGNORE INTO alert_rules(rule_id, name, kind, threshold, severity, duration_s, cooldown_s, window_s, enabled,
    org_id, entity_id, snoozed_until, snoozed_by, created_by, created_at, updated_at, builtin)
VALUES
    ('default-offline', 'Entity offline', 'offline', 10, 'warning', 0, 0, 300, 1, '', '', NULL, NULL, 'system',
     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'offline'),
    ('default-battery', 'Battery low', 'battery', 20, 'warning', 0, 0, 300, 1, '', '', NULL, NULL, 'system',
     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'battery'),
    ('default-threat', 'Threat detected', 'threat', 2, 'elevated', 0, 0, 300, 1, '', '', NULL, NULL, 'system',
     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'threat');
