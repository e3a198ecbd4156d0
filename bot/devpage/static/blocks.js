// Block Kit and mrkdwn rendering for the dev page (no dependencies): window.Blocks.render(blocks, ctx).
(function () {
  "use strict";

  const EMOJI = {
    white_check_mark: "✅", x: "❌", warning: "⚠️", rocket: "🚀", mag: "🔍", tada: "🎉", gear: "⚙️",
    floppy_disk: "💾", microscope: "🔬", inbox_tray: "📥", no_entry: "⛔", hourglass: "⌛",
    hourglass_flowing_sand: "⏳", heavy_multiplication_x: "✖️", large_green_circle: "🟢",
    large_yellow_circle: "🟡", large_orange_circle: "🟠", red_circle: "🔴", rotating_light: "🚨",
    test_tube: "🧪", lock: "🔒", clock3: "🕒", snowflake: "❄️", sunny: "☀️", arrow_forward: "▶️",
    fast_forward: "⏩", repeat: "🔁", wastebasket: "🗑️", information_source: "ℹ️", bulb: "💡",
    point_right: "👉", eyes: "👀", fire: "🔥", construction: "🚧", leftwards_arrow_with_hook: "↩️",
    ambulance: "🚑", memo: "📝", page_facing_up: "📄", link: "🔗", thumbsup: "👍", "+1": "👍",
    hammer_and_wrench: "🛠️", rewind: "⏪", bell: "🔔", raised_hand: "✋", wrench: "🔧", pushpin: "📌",
    speech_balloon: "💬", stopwatch: "⏱️", white_circle: "⚪", black_circle: "⚫", hourglass_done: "⌛",
  };

  function esc(s) {
    return String(s == null ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  // Slack escapes &, < and > in text it sends; turn them back before we escape for HTML.
  function unslack(s) {
    return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  function userName(ctx, id) {
    const u = (ctx.users || {})[id];
    return u ? u.real_name || u.name : id;
  }

  function angle(inner, ctx) {
    if (inner.startsWith("@")) {
      const id = inner.slice(1).split("|")[0];
      return `<span class="mention" data-testid="mention" data-user="${esc(id)}">@${esc(userName(ctx, id))}</span>`;
    }
    if (inner.startsWith("#")) {
      const [id, name] = inner.slice(1).split("|");
      return `<span class="mention">#${esc(name || id)}</span>`;
    }
    if (inner.startsWith("!subteam^")) {  // a user group: its handle when Slack sent one
      const [id, handle] = inner.slice("!subteam^".length).split("|");
      return `<span class="mention" data-testid="group-mention">${esc(handle || "@" + id)}</span>`;
    }
    if (inner.startsWith("!")) {
      return `<span class="mention">@${esc(inner.slice(1).split("|")[0])}</span>`;
    }
    if (/^(https?:|mailto:)/.test(inner)) {
      const [url, label] = inner.split("|");
      return `<a href="${esc(url)}" target="_blank" rel="noopener">${esc(label || url)}</a>`;
    }
    return null;
  }

  function formatText(raw, ctx) {
    const held = [];
    const hold = (html) => { held.push(html); return `\u0000${held.length - 1}\u0000`; };
    let s = raw.replace(/`([^`\n]+)`/g, (m, code) => hold(`<code>${esc(code)}</code>`));
    s = s.replace(/<([^<>\s][^<>]*)>/g, (m, inner) => {
      const html = angle(inner, ctx);
      return html == null ? m : hold(html);
    });
    s = esc(s);
    s = s.replace(/(^|[\s(\[>"'])\*([^*\n]+?)\*(?=$|[\s.,:;!?)\]'"])/g, "$1<b>$2</b>");
    s = s.replace(/(^|[\s(\[>"'])_([^_\n]+?)_(?=$|[\s.,:;!?)\]'"])/g, "$1<i>$2</i>");
    s = s.replace(/(^|[\s(\[>"'])~([^~\n]+?)~(?=$|[\s.,:;!?)\]'"])/g, "$1<s>$2</s>");
    s = s.replace(/:([a-z0-9_+\-]+):/g, (m, name) => (EMOJI[name] ? `<span class="emoji" title=":${name}:">${EMOJI[name]}</span>` : m));
    s = s.replace(/^&gt; ?(.*)$/gm, '<span class="quote">$1</span>');
    s = s.replace(/\n/g, "<br>");
    return s.replace(/\u0000(\d+)\u0000/g, (m, i) => held[Number(i)]);
  }

  // mrkdwn: ```code blocks```, `code`, *bold*, _italic_, ~strike~, <@U…> mentions, <url|links>, :emoji:
  function mrkdwn(text, ctx) {
    const raw = unslack(String(text || ""));
    return raw.split("```").map((part, i) =>
      i % 2 ? `<pre class="code-block" data-testid="code-block">${esc(part.replace(/^\n/, ""))}</pre>`
            : formatText(part, ctx)).join("");
  }

  function textObject(obj, ctx) {
    if (!obj) return "";
    if (obj.type === "mrkdwn") return mrkdwn(obj.text, ctx);
    return esc(unslack(obj.text || "")).replace(/:([a-z0-9_+\-]+):/g, (m, n) => EMOJI[n] || m);
  }

  function button(el, blockId, ctx) {
    const style = el.style ? ` ${el.style}` : "";
    const label = el.text ? el.text.text : "";
    return `<button type="button" class="btn${style}" data-testid="button" data-action-id="${esc(el.action_id)}"` +
      ` data-block-id="${esc(blockId || "")}" data-value="${esc(el.value == null ? "" : el.value)}"` +
      ` data-style="${esc(el.style || "default")}">${esc(label)}</button>`;
  }

  function element(el, blockId, ctx) {
    if (el.type === "button") return button(el, blockId, ctx);
    if (el.type === "image") return `<img class="ctx-img" src="${esc(el.image_url)}" alt="${esc(el.alt_text || "")}">`;
    if (el.type === "mrkdwn" || el.type === "plain_text") return `<span>${textObject(el, ctx)}</span>`;
    return `<span class="unsupported">[${esc(el.type)}]</span>`;
  }

  function input(block, ctx) {
    const el = block.element || {};
    const id = `in-${esc(block.block_id)}`;
    const ph = el.placeholder ? ` placeholder="${esc(el.placeholder.text)}"` : "";
    const attrs = `id="${id}" data-testid="modal-input" data-block-id="${esc(block.block_id)}"` +
      ` data-action-id="${esc(el.action_id || "value")}"${ph}`;
    const value = esc(el.initial_value || "");
    const field = el.multiline ? `<textarea ${attrs} rows="6">${value}</textarea>`
                               : `<input type="text" ${attrs} value="${value}">`;
    const optional = block.optional ? ' <span class="muted">(optional)</span>' : "";
    return `<div class="block input" data-block-id="${esc(block.block_id)}">` +
      `<label for="${id}">${textObject(block.label, ctx)}${optional}</label>${field}` +
      (block.hint ? `<div class="hint">${textObject(block.hint, ctx)}</div>` : "") +
      `<div class="field-error" data-testid="modal-error" data-block-id="${esc(block.block_id)}" hidden></div></div>`;
  }

  function rich(block, ctx) {
    const parts = [];
    for (const section of block.elements || []) {
      const text = (section.elements || []).map((e) => e.type === "user" ? `<@${e.user_id}>` : e.text || "").join("");
      parts.push(section.type === "rich_text_preformatted" ? "```" + text + "```" : text);
    }
    return `<div class="block section">${mrkdwn(parts.join("\n"), ctx)}</div>`;
  }

  function block(b, ctx) {
    switch (b.type) {
      case "header":
        return `<div class="block header" data-testid="block-header">${textObject(b.text, ctx)}</div>`;
      case "section": {
        const text = b.text ? `<div class="section-text">${textObject(b.text, ctx)}</div>` : "";
        const fields = b.fields ? `<div class="fields">${b.fields.map((f) =>
          `<div class="field">${textObject(f, ctx)}</div>`).join("")}</div>` : "";
        const acc = b.accessory ? `<div class="accessory">${element(b.accessory, b.block_id, ctx)}</div>` : "";
        return `<div class="block section" data-testid="block-section">${acc}${text}${fields}</div>`;
      }
      case "context":
        return `<div class="block context" data-testid="block-context">${(b.elements || []).map((e) => element(e, b.block_id, ctx)).join(" ")}</div>`;
      case "divider":
        return '<hr class="block divider" data-testid="block-divider">';
      case "actions":
        return `<div class="block actions" data-testid="block-actions">${(b.elements || []).map((e) => element(e, b.block_id, ctx)).join("")}</div>`;
      case "input":
        return input(b, ctx);
      case "image":
        return `<div class="block image"><img src="${esc(b.image_url)}" alt="${esc(b.alt_text || "")}"></div>`;
      case "rich_text":
        return rich(b, ctx);
      default:
        return `<div class="block unsupported">[unsupported block ${esc(b.type)}]</div>`;
    }
  }

  function render(blocks, ctx) {
    return (blocks || []).map((b) => block(b, ctx)).join("");
  }

  window.Blocks = { render, mrkdwn, textObject, esc, EMOJI };
})();
