// herd serve's chat page: streams /v1/chat/completions and renders the reply as it arrives.
//
// The conversation lives in this page only (the `conversation` array), sent whole each turn with the
// system prompt first. Model output is untrusted text: it is rendered as a small markdown subset
// (fenced code, inline code, bold, italic, paragraphs, "- " lists) built only from DOM nodes and
// textContent, never parsed as HTML, so markup in a reply shows as literal text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    messages: $("messages"),
    composer: $("composer"),
    input: $("input"),
    send: $("send"),
    stop: $("stop"),
    system: $("system"),
    temperature: $("temperature"),
    maxTokens: $("max-tokens"),
    apiKey: $("api-key"),
    newChat: $("new-chat"),
    model: $("model"),
    settings: $("settings"),
  };

  /** @type {{role: string, content: string}[]} the turns so far, without the system prompt */
  let conversation = [];
  let modelId = null;
  let running = null; // the AbortController of the request in flight

  // ---- markdown subset, DOM only ----

  const FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;
  const BULLET = /^\s*- (.*)$/;
  const INLINE = /`([^`\n]+)`|\*\*(.+?)\*\*|\*([^*\s](?:[^*\n]*?[^*\s])?)\*/g;

  /** Append `text` to `parent` with `code`, **bold** and *italic* as elements, the rest as text nodes. */
  function appendInline(parent, text) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > last) parent.append(text.slice(last, match.index));
      const [, code, bold, italic] = match;
      if (code !== undefined) {
        const el = document.createElement("code");
        el.textContent = code;
        parent.append(el);
      } else {
        const el = document.createElement(bold !== undefined ? "strong" : "em");
        appendInline(el, bold !== undefined ? bold : italic);
        parent.append(el);
      }
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  /** A code block: the language, a copy button and the code as text. */
  function codeBlock(lang, lines) {
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.textContent = lang || "code";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "copy";
    copy.setAttribute("aria-label", `copy ${lang || "code"} block`);
    const pre = document.createElement("pre");
    const code = document.createElement("code");
    if (lang) code.dataset.lang = lang;
    code.textContent = lines.join("\n");
    pre.append(code);
    copy.addEventListener("click", () => copyText(code, copy));
    head.append(label, copy);
    block.append(head, pre);
    return block;
  }

  async function copyText(code, button) {
    try {
      await navigator.clipboard.writeText(code.textContent);
      button.textContent = "copied";
    } catch {
      // No clipboard API (an insecure origin such as a LAN address): select the code for Ctrl+C.
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "selected";
    }
    setTimeout(() => { button.textContent = "copy"; }, 1500);
  }

  /** Render markdown text as a DocumentFragment. An unclosed fence (mid-stream) runs to the end. */
  function renderMarkdown(text) {
    const out = document.createDocumentFragment();
    const lines = text.split(/\r?\n/);
    let paragraph = null;
    let list = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(FENCE);
      if (fence) {
        const body = [];
        for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        out.append(codeBlock(fence[1], body));
        paragraph = list = null;
        continue;
      }
      const bullet = line.match(BULLET);
      if (bullet) {
        if (!list) {
          list = document.createElement("ul");
          out.append(list);
        }
        const item = document.createElement("li");
        appendInline(item, bullet[1]);
        list.append(item);
        paragraph = null;
      } else if (line.trim() === "") {
        paragraph = list = null;
      } else {
        if (paragraph) {
          paragraph.append(document.createElement("br"));
        } else {
          paragraph = document.createElement("p");
          out.append(paragraph);
        }
        appendInline(paragraph, line);
        list = null;
      }
    }
    return out;
  }

  // ---- server-sent events ----

  /** Split a text stream into SSE `data` payloads; a line or event may arrive across several pushes. */
  class SseParser {
    constructor() {
      this.buffer = "";
      this.data = [];
    }

    /** Feed the next piece of text; returns the payloads of the events it completed. */
    push(text) {
      this.buffer += text;
      const lines = this.buffer.split(/\r?\n/);
      this.buffer = lines.pop();
      const events = [];
      for (const line of lines) {
        if (line === "") {
          if (this.data.length) events.push(this.data.join("\n"));
          this.data = [];
        } else if (line.startsWith("data:")) {
          this.data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
      }
      return events;
    }

    /** The payloads left when the stream ends without a final blank line. */
    end() {
      const events = this.push("\n\n");
      this.buffer = "";
      return events;
    }
  }

  // ---- talking to the server ----

  function headers() {
    const result = { "Content-Type": "application/json" };
    const key = ui.apiKey.value.trim();
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  /** The error a non-2xx response stands for: its `{"error": {"message"}}` when it has one. */
  async function responseError(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch {
      // not JSON: the status line says it
    }
    if (response.status === 401) message += " (set the API key in Settings)";
    return new Error(message);
  }

  async function loadModel() {
    ui.model.textContent = "loading…";
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (!response.ok) throw await responseError(response);
      const body = await response.json();
      modelId = body.data[0].id;
      ui.model.textContent = modelId;
      ui.model.title = modelId;
    } catch (error) {
      modelId = null;
      ui.model.textContent = "unavailable";
      showError(`Could not list the models: ${error.message}`);
    }
  }

  // ---- the conversation view ----

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  function addMessage(kind) {
    const stick = nearBottom();
    const el = document.createElement("div");
    el.className = `message ${kind}`;
    ui.messages.append(el);
    if (stick) el.scrollIntoView({ block: "end" });
    return el;
  }

  function showError(text) {
    const el = addMessage("error");
    el.setAttribute("role", "alert");
    el.textContent = text;
  }

  function renderInto(el, text) {
    const stick = nearBottom();
    el.replaceChildren(renderMarkdown(text));
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function setRunning(controller) {
    running = controller;
    ui.stop.disabled = !controller;
    ui.send.disabled = !!controller;
    ui.messages.setAttribute("aria-busy", controller ? "true" : "false");
  }

  /** The number in `input`, or an error saying what `name` must be (`whole`: an integer). */
  function numberFrom(input, name, whole) {
    const value = Number(input.value);
    const { rangeUnderflow, rangeOverflow, badInput } = input.validity;
    if (input.value.trim() === "" || badInput || rangeUnderflow || rangeOverflow || (whole && !Number.isInteger(value))) {
      const range = input.max ? `from ${input.min} to ${input.max}` : `of at least ${input.min}`;
      throw new Error(`${name} must be a ${whole ? "whole " : ""}number ${range}, not "${input.value}"`);
    }
    return value;
  }

  /** Stream one reply into `el`, keeping its text and why it ended in `reply` as they arrive. */
  async function streamReply(request, el, signal, reply) {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(request),
      signal,
    });
    if (!response.ok) throw await responseError(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    const take = (payloads) => {
      for (const payload of payloads) {
        if (payload === "[DONE]") return true;
        const chunk = JSON.parse(payload);
        if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        if (choice.delta && choice.delta.content) {
          reply.text += choice.delta.content;
          renderInto(el, reply.text);
        }
        if (choice.finish_reason) reply.finish = choice.finish_reason;
      }
      return false;
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        take(parser.push(decoder.decode()).concat(parser.end()));
        return;
      }
      if (take(parser.push(decoder.decode(value, { stream: true })))) {
        await reader.cancel();
        return;
      }
    }
  }

  async function send() {
    const content = ui.input.value;
    if (running || content.trim() === "") return;
    let request;
    try {
      request = {
        model: modelId,
        messages: [],
        stream: true,
        temperature: numberFrom(ui.temperature, "Temperature", false),
        max_tokens: numberFrom(ui.maxTokens, "Max tokens", true),
      };
    } catch (error) {
      showError(error.message);
      return;
    }
    if (!modelId) await loadModel();
    if (!modelId) return;
    request.model = modelId;

    const turn = { role: "user", content };
    conversation.push(turn);
    const system = ui.system.value.trim();
    request.messages = (system ? [{ role: "system", content: system }] : []).concat(conversation);
    const userEl = addMessage("user");
    userEl.textContent = content;
    ui.input.value = "";
    autosize();
    const replyEl = addMessage("assistant");
    replyEl.classList.add("pending");
    const controller = new AbortController();
    setRunning(controller);

    const reply = { text: "", finish: null };
    try {
      await streamReply(request, replyEl, controller.signal, reply);
      if (reply.finish === "length") replyEl.dataset.note = "stopped at max tokens";
      else if (reply.finish === "context") replyEl.dataset.note = "stopped: the context is full";
    } catch (error) {
      if (controller.signal.aborted) {
        replyEl.dataset.note = "stopped";
      } else {
        showError(error instanceof TypeError ? `Network error: ${error.message}` : error.message);
      }
    } finally {
      replyEl.classList.remove("pending");
      if (running === controller) setRunning(null);
    }
    if (!conversation.includes(turn)) return; // "New chat" was pressed meanwhile
    if (reply.text) {
      conversation.push({ role: "assistant", content: reply.text });
    } else {
      // Nothing came back: take the turn out so that the roles still alternate, and give the text back.
      conversation.pop();
      userEl.remove();
      replyEl.remove();
      if (ui.input.value === "") ui.input.value = content;
      autosize();
    }
  }

  function newChat() {
    if (running) running.abort();
    setRunning(null);
    conversation = [];
    ui.messages.replaceChildren();
    ui.input.focus();
  }

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 240)}px`;
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.input.addEventListener("input", autosize);
  ui.stop.addEventListener("click", () => running && running.abort());
  ui.newChat.addEventListener("click", newChat);
  ui.apiKey.addEventListener("change", () => { if (!modelId) loadModel(); });

  if (window.matchMedia("(min-width: 760px)").matches) ui.settings.open = true;
  window.herdChat = Object.freeze({ renderMarkdown, SseParser });
  loadModel();
  ui.input.focus();
})();
