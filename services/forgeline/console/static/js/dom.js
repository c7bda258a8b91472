// Building the page: elements with text set through textContent (never HTML from data).

/** An element: h("a", {href: "/x", class: "c"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "path", "g", "rect", "text", "line", "circle", "polyline", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

/** 1536 -> "1.5 KiB". */
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = Number(n) || 0;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit++; }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

/** A number with at most four significant decimals. */
export function num(x) {
  if (x === null || x === undefined) return "–";
  return Math.abs(x) >= 100 ? x.toFixed(1) : Number(x.toPrecision(4)).toString();
}

/** An ISO time as local date and time, or "". */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** A state badge. */
export function badge(state) {
  return h("span", {class: `badge ${state}`}, state);
}

/** A table from a header row and rows of cells. */
export function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

/** A link the router follows without reloading. */
export function link(href, text) {
  return h("a", {href}, text);
}
