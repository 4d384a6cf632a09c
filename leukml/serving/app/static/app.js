// leukml app: send the chosen images in chunks (one model call each), show each answer, summarise.
"use strict";
const SETTINGS = JSON.parse(document.getElementById("settings").textContent);
const CODES = JSON.parse(document.getElementById("codes").textContent);
const IMAGE = /\.(bmp|png|jpe?g|tiff?)$/i;
let rows = [];
let order = { key: "index", ascending: true };

const $ = (id) => document.getElementById(id);

function message(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("messages").appendChild(li);
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function post(path, body, headers) {
  const response = await fetch(path, { method: "POST", body, headers });
  const payload = await response.json().catch(() => ({ error: `${path} answered ${response.status}` }));
  if (!response.ok) throw new Error(payload.error || `${path} answered ${response.status}`);
  return payload;
}

// a zip is opened by the server; its images come back to be sent like the others
async function expand(file) {
  const payload = await post("api/expand", file, { "Content-Type": "application/zip", "X-File-Name": file.name });
  payload.skipped.forEach(message);
  return payload.files.map((f) => ({ name: f.name, data: f.data }));
}

async function classify(files) {
  rows = [];
  $("messages").replaceChildren();
  let items = [];
  for (const file of files) {
    const name = file.relPath || file.webkitRelativePath || file.name;
    if (/\.zip$/i.test(name)) {
      try { items = items.concat(await expand(file)); } catch (error) { message(error.message); }
    } else if (file.size > SETTINGS.maxBytes) {  // the server's limit, before sending it
      message(`${name}: ${file.size} bytes, over the ${SETTINGS.maxBytes}-byte limit; send smaller images`);
    } else if (IMAGE.test(name) || !name.includes("/")) {  // loose files: a bad one is named
      items.push({ name, file });
    }
  }
  if (items.length > SETTINGS.maxFiles) {
    message(`${items.length} images: an upload may hold at most ${SETTINGS.maxFiles}; send fewer`);
    return;
  }
  $("progress-box").hidden = false;
  progress(0, items.length);
  for (let start = 0; start < items.length; start += SETTINGS.chunk) {
    const chunk = items.slice(start, start + SETTINGS.chunk);
    try {
      const sent = await Promise.all(chunk.map(async (i) => ({ name: i.name, data: i.data ?? await base64(i.file) })));
      const payload = await post("api/predict", JSON.stringify({ files: sent }), { "Content-Type": "application/json" });
      payload.results.forEach((r, k) => r.error ? message(r.error) : rows.push({ ...r, index: start + k + 1 }));
    } catch (error) {
      message(`${chunk.map((i) => i.name).join(", ")}: ${error.message}`);
    }
    progress(Math.min(start + SETTINGS.chunk, items.length), items.length);
    render();
  }
}

function progress(done, total) {
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = `${done} of ${total} images answered`;
}

// every element is built with DOM properties: a file name (a zip's entry names are anyone's) is
// only ever text, never HTML
function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// Wilson's 95% score interval of k successes in n (leukml.analysis.uncertainty.wilson's twin)
function wilson(k, n) {
  const z2 = 1.959963984540054 ** 2, share = k / n;
  const center = (share + z2 / (2 * n)) / (1 + z2 / n);
  const half = Math.sqrt(z2) * Math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

function summary() {
  const p = rows.map((r) => r.p_all);
  const n = p.length;
  const nAll = rows.filter((r) => r.label === "ALL").length;
  const mean = p.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(p.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const warned = rows.filter((r) => r.warnings.length).length;
  const [low, high] = wilson(nAll, n);
  const b = (id, value) => element("b", { id, textContent: value });
  return [b("n-cells", n), " cells: ", b("n-all", nAll), " predicted ALL, ", b("n-hem", n - nAll),
    " hem; p_all mean ", b("p-mean", mean.toFixed(3)), ", standard deviation ", b("p-sd", sd.toFixed(3)),
    `, range ${Math.min(...p).toFixed(3)} to ${Math.max(...p).toFixed(3)}; `,
    element("span", { id: "n-warned", textContent: warned }), " unlike the training cells.",
    element("br"), "Fraction predicted ALL: ", b("f-all", (nAll / n).toFixed(3)), ", 95% interval ",
    b("f-all-ci", `[${low.toFixed(2)}, ${high.toFixed(2)}]`),
    ` (Wilson): how sure that fraction is for ${n} cells of this kind. It is not a diagnosis of the ` +
    "patient: the model's errors, the cells chosen and the threshold all stand between it and one."];
}

function cell(tr, children, cls) {
  const td = element("td", cls ? { className: cls } : {}, ...children);
  tr.appendChild(td);
  return td;
}

function render() {
  $("sample").hidden = rows.length === 0;
  if (!rows.length) return;
  $("summary").replaceChildren(...summary());
  const sorted = [...rows].sort((a, b) => {
    const x = a[order.key], y = b[order.key];
    return (x < y ? -1 : x > y ? 1 : 0) * (order.ascending ? 1 : -1);
  });
  const body = document.querySelector("#results tbody");
  body.replaceChildren();
  for (const r of sorted) {
    const tr = element("tr");
    tr.dataset.file = r.file;
    tr.dataset.pAll = r.p_all;
    cell(tr, [String(r.index)]);
    cell(tr, [r.file], "file");
    cell(tr, [element("img", { className: "cell", alt: `cell ${r.file}`, src: r.image })]);
    cell(tr, [element("img", { className: "gradcam", alt: `Grad-CAM of ${r.file}`, src: r.gradcam })]);
    cell(tr, [r.label], `label label-${r.label}`);
    const bar = element("div");
    bar.style.width = `${(100 * r.p_all).toFixed(1)}%`;  // a style property, not an attribute: the CSP allows it
    cell(tr, [element("span", { className: "p-all", textContent: r.p_all.toFixed(4) }),
      element("div", { className: "bar" }, bar)]);
    cell(tr, r.warnings.map((w) => element("div", { className: "warning", textContent: w })), "warnings");
    body.appendChild(tr);
  }
}

// the same columns as `leukml predict --csv`: file, label (1 = ALL, 0 = hem), p_all; upload order
function download() {
  const quote = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = ["file,label,p_all", ...[...rows].sort((a, b) => a.index - b.index)
    .map((r) => `${quote(r.file)},${CODES[r.label]},${r.p_all}`)];
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
  link.download = "leukml-predictions.csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
}

// a dropped folder: walk it (Chrome hands folders over as entries)
async function walk(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    file.relPath = prefix + file.name;
    return [file];
  }
  const reader = entry.createReader();
  let found = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) found = found.concat(await walk(child, `${prefix}${entry.name}/`));
  }
  return found;
}

// the token has been traded for a cookie (HTTP-only): it leaves the address bar, the history and
// anything a script could read from location
if (new URLSearchParams(location.search).has("token")) {
  const url = new URL(location.href);
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search + url.hash);
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry());
  if (entries.every(Boolean)) {
    let files = [];
    for (const entry of entries) files = files.concat(await walk(entry, ""));
    classify(files);
  } else {
    classify([...e.dataTransfer.files]);
  }
});
$("files").addEventListener("change", (e) => classify([...e.target.files]));
$("folder").addEventListener("change", (e) => classify([...e.target.files].filter((f) => IMAGE.test(f.name))));
$("download").addEventListener("click", download);
document.querySelectorAll("th[data-sort]").forEach((th) => th.addEventListener("click", () => {
  const key = th.dataset.sort;
  order = { key, ascending: order.key === key ? !order.ascending : true };
  render();
}));
