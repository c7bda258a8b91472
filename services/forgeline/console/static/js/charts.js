// The two drawings: a loss curve and a lineage graph, as plain SVG.

import {h, num} from "./dom.js";

const W = 640, H = 260, PAD = {left: 56, right: 16, top: 14, bottom: 34};

/**
 * The loss curve of `points` ([{step, loss}] sorted by step): one path vertex per point.
 * The SVG's data-steps lists the steps drawn.
 */
export function lossCurve(points) {
  const svg = h("svg", {id: "loss-curve", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "loss curve"});
  svg.dataset.steps = points.map((p) => p.step).join(",");
  if (!points.length) {
    svg.append(h("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis"}, "waiting for the first loss…"));
    return svg;
  }
  const steps = points.map((p) => p.step), losses = points.map((p) => p.loss);
  const x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  let y0 = Math.min(...losses), y1 = Math.max(...losses);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const x = (s) => PAD.left + ((s - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const grid = h("g", {class: "grid"});
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    grid.append(h("line", {x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v)}),
      h("text", {x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis"}, num(v)));
  }
  grid.append(h("text", {x: PAD.left, y: H - 8, class: "axis"}, `step ${x0}`),
    h("text", {x: W - PAD.right, y: H - 8, "text-anchor": "end", class: "axis"}, `step ${x1}`));
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)} ${y(p.loss).toFixed(1)}`).join(" ");
  const dots = h("g", {class: "dots"}, points.map((p) =>
    h("circle", {cx: x(p.step), cy: y(p.loss), r: 2.5}, h("title", {}, `step ${p.step}: ${num(p.loss)}`))));
  svg.append(grid, h("path", {class: "loss-line", d}), dots);
  return svg;
}

const KIND_ORDER = ["base", "dataset", "adapter", "merged", "quantized"];

/**
 * The lineage graph: versions as boxes in columns by depth from the sources, edges from
 * parent to child; clicking a box calls onSelect(ref).
 */
export function lineageGraph({nodes, edges, root}, onSelect) {
  const parents = new Map(nodes.map((n) => [n.ref, []]));
  for (const e of edges) if (parents.has(e.child)) parents.get(e.child).push(e.parent);
  const depth = new Map();
  const depthOf = (ref, seen = new Set()) => {
    if (depth.has(ref)) return depth.get(ref);
    if (seen.has(ref)) return 0;
    seen.add(ref);
    const ps = (parents.get(ref) || []).filter((p) => parents.has(p));
    const d = ps.length ? 1 + Math.max(...ps.map((p) => depthOf(p, seen))) : 0;
    depth.set(ref, d);
    return d;
  };
  const columns = [];
  for (const n of nodes) (columns[depthOf(n.ref)] ||= []).push(n);
  for (const c of columns) if (c) c.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.ref.localeCompare(b.ref));
  const BW = 170, BH = 46, GX = 60, GY = 22;
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = columns.length * (BW + GX) - GX + 20, height = rows * (BH + GY) - GY + 20;
  const at = new Map();
  columns.forEach((c, i) => (c || []).forEach((n, j) => at.set(n.ref, {x: 10 + i * (BW + GX), y: 10 + j * (BH + GY)})));
  const svg = h("svg", {id: "lineage", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "lineage graph"});
  for (const e of edges) {
    const a = at.get(e.parent), b = at.get(e.child);
    if (!a || !b) continue;
    const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
    svg.append(h("path", {class: "edge", d: `M${x1} ${y1} C${mx} ${y1} ${mx} ${y2} ${x2 - 4} ${y2}`,
      "data-parent": e.parent, "data-child": e.child}));
  }
  for (const n of nodes) {
    const p = at.get(n.ref);
    const g = h("g", {class: `node ${n.kind}${n.ref === root ? " root" : ""}`, tabindex: 0, role: "link",
      transform: `translate(${p.x} ${p.y})`, "data-ref": n.ref, "data-kind": n.kind});
    g.append(h("rect", {width: BW, height: BH, rx: 6}),
      h("text", {x: 10, y: 19, class: "ref"}, n.ref.length > 24 ? n.ref.slice(0, 23) + "…" : n.ref),
      h("text", {x: 10, y: 36, class: "kind"}, n.kind + (n.aliases.length ? ` @${n.aliases.join(",")}` : "")),
      h("title", {}, `${n.ref} (${n.kind})`));
    const go = () => onSelect(n.ref);
    g.addEventListener("click", go);
    g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
    svg.append(g);
  }
  return svg;
}
