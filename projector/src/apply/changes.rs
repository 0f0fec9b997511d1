//! Changes to sent messages in the projections: an edited or unsent last
//! message updates the conversation's preview, and an unsent (for the
//! receiver) or hidden (for the hider) message leaves the unread set.
//!
//! Like every merge, each commutes with the events around it: the preview
//! takes a change only for the entry's last seq and only if it is newer than
//! the change the preview holds (`changeSeq` of the stored message), so a
//! late or repeated change never undoes a newer one. Changes are rare, so
//! they are applied one script call each, after the batch's other merges.

use std::sync::LazyLock;

use duet_common::AppContext;
use fred::types::scripts::Script;

use super::{Merge, Op};

/// KEYS = [entry, unread]; ARGV = [seq, change seq, message JSON or '', '1' if gone].
static CHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local cur = redis.call('HMGET', KEYS[1], 'last_seq', 'last_message')
if ARGV[3] ~= '' and cur[1] and tonumber(cur[1]) == tonumber(ARGV[1]) then
  local held = 0
  if cur[2] then
    local ok, message = pcall(cjson.decode, cur[2])
    if ok and type(message) == 'table' and message.changeSeq then held = tonumber(message.changeSeq) end
  end
  if tonumber(ARGV[2]) > held then redis.call('HSET', KEYS[1], 'last_message', ARGV[3]) end
end
if ARGV[4] == '1' and redis.call('ZREM', KEYS[2], ARGV[1]) > 0 then
  redis.call('HSET', KEYS[1], 'unread', tostring(redis.call('ZCARD', KEYS[2])))
end
return 1
"#,
    )
});

/// Applies the [`Op::Changed`] merges of `merges`, in order.
pub(super) async fn apply(ctx: &AppContext, merges: &[Merge]) -> anyhow::Result<()> {
    for merge in merges {
        let Op::Changed { seq, message, gone } = &merge.op else { continue };
        let (change_seq, json) = match message {
            Some(message) => (message.change_seq.unwrap_or(0), serde_json::to_string(message)?),
            None => (0, String::new()),
        };
        let keys = vec![ctx.keys.entry(merge.user, merge.conversation), ctx.keys.unread(merge.user, merge.conversation)];
        let args = vec![seq.to_string(), change_seq.to_string(), json, if *gone { "1" } else { "0" }.to_owned()];
        CHANGE.evalsha_with_reload::<i64, _, _>(ctx.redis.next(), keys, args).await?;
    }
    Ok(())
}
