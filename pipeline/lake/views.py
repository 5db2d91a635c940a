"""The SQL of the warehouse's views (pipeline.lake.warehouse): `usage`, `costs`, `llm_usage`,
`llm_usage_unmatched` and `voided_events`. No user value is ever formatted into them."""

from pipeline.domain.costing import GATEWAY_TIMEOUT_TAG

# Events a correction voids, with the correction's id (an event matched by two voids is listed twice).
VOIDED_BY_ID = ("SELECT u.event_id, i.correction FROM usage u "
                "JOIN corrections_void_ids i ON u.event_id = i.event_id")
VOIDED_BY_FILTER = ("SELECT u.event_id, f.correction FROM usage u JOIN corrections_void_filters f "
                    "ON u.subscription_id = f.subscription_id AND u.timestamp >= f.start_time "
                    "AND u.timestamp < f.end_time AND (f.deployment IS NULL OR u.deployment = f.deployment)")
NO_VOIDS = "SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS correction WHERE false"
# `is_voided` is a macro that register_corrections redefines: `false` when nothing is voided, so
# that DuckDB drops the filter and never reads the event ids; else an anti-join on `voided_events`.
NOT_VOIDED = "NOT is_voided(u.event_id)"
# `gateway_timeout` of a snapshot file written before the column (pipeline.lake.usage): from its tags.
TIMEOUT_OF_TAGS = "coalesce(tags['{}'] = '{}', false)".format(*GATEWAY_TIMEOUT_TAG)
# The reference period of a row's `date` (Reference.period_of): how many of the boundaries, a
# DATE[] parameter, fall on or before it.
PERIOD_OF_DATE = "len(list_filter(?::DATE[], lambda b: b <= date))"
IS_VOIDED = "EXISTS (SELECT 1 FROM voided_events v WHERE v.event_id = voided_event_id)"

# What pricing reads of an event besides its tokens, as `usage` columns: the tier it is billed at
# (pipeline.domain.pricing.billing_tier: null, default, auto and standard are standard), whether
# Azure spilled it over from a provisioned deployment, and its audio token classes
# (pipeline.domain.costing.AUDIO_PROMPT | AUDIO_COMPLETION).
BILLING_COLUMNS = """
       CASE WHEN e.service_tier IS NULL OR lower(trim(e.service_tier)) IN ('', 'default', 'auto', 'standard')
            THEN 'standard' ELSE lower(trim(e.service_tier)) END AS billing_tier,
       coalesce(e.spillover, false) AS spilled,
       (coalesce(e.audio_prompt_tokens, 0) > 0)::INTEGER + 2 * (coalesce(e.audio_completion_tokens, 0) > 0)::INTEGER
         AS audio_classes"""
# The pricing key of an event (pipeline.lake.pricing_keys.usage_key reads it in this order): its
# day, then what a day's rollup (pipeline.lake.rollups) groups by.
KEY_OF_DAY = "u.subscription_id, u.cost_center, u.deployment, u.model, u.usage_state, u.billing_tier, u.spilled, " \
             "u.audio_classes"
KEY_COLUMNS = f"u.date, {KEY_OF_DAY}"
# The sums of a group of `usage` rows: the report's (pipeline.stages.report.sql) and a rollup's.
USAGE_SUMS = ("count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
              "coalesce(sum(cached_tokens), 0) AS cached_tokens, "
              "coalesce(sum(completion_tokens), 0) AS completion_tokens, "
              "coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens, "
              "coalesce(sum(audio_prompt_tokens), 0) AS audio_prompt_tokens, "
              "coalesce(sum(audio_completion_tokens), 0) AS audio_completion_tokens")
SUMMED = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens",
          "audio_prompt_tokens", "audio_completion_tokens")

COSTS_VIEW = """
CREATE OR REPLACE VIEW costs AS
SELECT u.* EXCLUDE (cost_center, model),
       u.cost_center AS cost_center_sent,
       r.cost_center, r.model, r.deployment_type,
       strftime(u.date, '%Y-%m') AS month,
       CASE WHEN r.currency IS NOT NULL THEN
            (u.prompt_tokens - u.cached_tokens - coalesce(u.audio_prompt_tokens, 0))::DECIMAL(18, 0) * r.input_per_token
          + u.cached_tokens::DECIMAL(18, 0) * r.cached_input_per_token
          + (u.completion_tokens - coalesce(u.audio_completion_tokens, 0))::DECIMAL(18, 0) * r.output_per_token
          + CASE WHEN u.audio_prompt_tokens > 0 THEN u.audio_prompt_tokens::DECIMAL(18, 0)
                 * r.audio_input_per_token ELSE 0 END
          + CASE WHEN u.audio_completion_tokens > 0 THEN u.audio_completion_tokens::DECIMAL(18, 0)
                 * r.audio_output_per_token ELSE 0 END END AS cost,
       r.currency, r.catalog_version, r.unpriced_reason, r.charge_class, r.pricing
FROM usage u JOIN pricing_keys r
  ON u.date = r.date AND u.subscription_id = r.subscription_id
 AND u.cost_center IS NOT DISTINCT FROM r.cost_center_sent AND u.deployment = r.deployment
 AND u.model IS NOT DISTINCT FROM r.model_sent AND u.usage_state = r.state AND u.billing_tier = r.billing_tier
 AND u.spilled = r.spilled AND u.audio_classes = r.audio_classes
WHERE NOT is_voided(u.event_id)
"""

# One usage record per join id: the one with the most tokens (a request's counts are logged once;
# other entries of the same request, such as message chunks, carry none or the same), then a
# fixed order, so that every reader picks the same record.
LLM_USAGE_VIEW = """
CREATE OR REPLACE VIEW llm_usage AS
SELECT * FROM llm_usage_records
QUALIFY row_number() OVER (PARTITION BY join_id ORDER BY total_tokens DESC, prompt_tokens DESC,
        cached_tokens DESC NULLS LAST, sequence_number NULLS LAST, time, request_id NULLS LAST,
        deployment NULLS LAST, model NULLS LAST, region NULLS LAST, operation NULLS LAST) = 1
"""
LLM_UNMATCHED_VIEW = """
CREATE OR REPLACE VIEW llm_usage_unmatched AS
SELECT l.* FROM llm_usage l WHERE NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.event_id = l.join_id)
"""
# Usage from the LLM log fills only streamed events that came without it. Cached tokens the log
# does not report count as uncached (the higher price), and `cached_tokens_unknown` says so: the
# table has no cached-token column, so the report shows the most such usage may be over-charged.
# The log has no audio counts either: 0, as for a response without them. `llm_mismatch`: the log
# record that gave the usage names another deployment or model than the event (whose are used).
USAGE_VIEW = """
CREATE OR REPLACE VIEW usage AS
-- usage_state: timed-out is costing.GATEWAY_TIMEOUT_TAG (the policy's tag on a forward-request timeout),
-- the snapshot's gateway_timeout.
SELECT e.* REPLACE (
         coalesce(e.prompt_tokens, l.prompt_tokens) AS prompt_tokens,
         coalesce(e.completion_tokens, l.completion_tokens) AS completion_tokens,
         coalesce(e.total_tokens, l.total_tokens) AS total_tokens,
         coalesce(e.cached_tokens, CASE WHEN l.join_id IS NOT NULL THEN coalesce(l.cached_tokens, 0) END)
           AS cached_tokens,
         coalesce(e.audio_prompt_tokens, CASE WHEN l.join_id IS NOT NULL THEN 0 END) AS audio_prompt_tokens,
         coalesce(e.audio_completion_tokens, CASE WHEN l.join_id IS NOT NULL THEN 0 END) AS audio_completion_tokens),
       CASE WHEN e.prompt_tokens IS NOT NULL THEN e.usage_source
            WHEN l.join_id IS NOT NULL THEN 'llm-log' ELSE 'none' END AS usage_origin,
       CASE WHEN e.prompt_tokens IS NOT NULL OR l.join_id IS NOT NULL THEN 'measured'
            WHEN e.usage_source = 'stream' AND e.timestamp > {cutoff} THEN 'pending'
            WHEN e.usage_source = 'stream' THEN 'expired'
            WHEN e.gateway_timeout THEN 'timed-out' ELSE 'none' END AS usage_state,
       e.prompt_tokens IS NULL AND l.join_id IS NOT NULL AND l.cached_tokens IS NULL AS cached_tokens_unknown,
       {billing},
       l.join_id IS NOT NULL AND ((l.deployment IS NOT NULL AND lower(l.deployment) <> lower(e.deployment))
         OR (l.model IS NOT NULL AND e.model IS NOT NULL AND lower(l.model) <> lower(e.model))) AS llm_mismatch
FROM usage_events e
LEFT JOIN llm_usage l ON e.usage_source = 'stream' AND e.prompt_tokens IS NULL AND l.join_id = e.event_id
"""
# The same view when there is no LLM usage to join (no file read): what the join would give.
# `{events}` and `{pending}`: a local store's files of days whose every event is older than the
# usage window get their own scan with `false` for the window test, so that the report, which
# never selects `timestamp`, does not read that column for them (a third of its scan).
USAGE_WITHOUT_LLM_USAGE = """
SELECT e.*,
       CASE WHEN e.prompt_tokens IS NOT NULL THEN e.usage_source ELSE 'none' END AS usage_origin,
       CASE WHEN e.prompt_tokens IS NOT NULL THEN 'measured'
            WHEN e.usage_source = 'stream' AND {pending} THEN 'pending'
            WHEN e.usage_source = 'stream' THEN 'expired'
            WHEN e.gateway_timeout THEN 'timed-out' ELSE 'none' END AS usage_state,
       false AS cached_tokens_unknown,
       {billing},
       false AS llm_mismatch
FROM {events} e
"""
SETTLED_EVENTS, RECENT_EVENTS = "usage_events_settled", "usage_events_recent"
# The rollups of settled files (pipeline.lake.rollups), and the scan of the settled files without one.
ROLLUPS, UNROLLED_EVENTS = "usage_rollups", "usage_events_unrolled"
LLM_UNMATCHED_VIEW_EMPTY = "CREATE OR REPLACE VIEW llm_usage_unmatched AS SELECT l.* FROM llm_usage l WHERE false"
