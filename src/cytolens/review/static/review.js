// The cytolens review page: one image of the queue at a time, its cells drawn over it, every edit saved at once.
// No framework, nothing fetched but this app's own API; text from the store is set with textContent only.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const UNCERTAIN = "#ff0000";
const CONFIDENT = "#00c000";
const UNKNOWN_CLASS = "#000000";

const state = {
  classes: [], // [{name, colour}]
  queue: [], // [{id, name, relevance, version}], fixed for the session (labelled images move to its end on reload)
  index: 0,
  data: null, // the current image's cells as the server sent them
  cells: [], // the working label set: {x, y, box, class_name, proposal_id, label_id, proposal, labelled}
  selected: -1,
  currentClass: 0,
  mode: null, // null, "box" or "point"
  view: { scale: 1, tx: 0, ty: 0 },
  saving: false,
};

const $ = (id) => document.getElementById(id);

function status(text, isError = false) {
  const element = $("status");
  element.textContent = text;
  element.className = isError ? "error" : "ok";
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// Accepted cells are remembered for the tab (the store keeps an accepted proposal as a label like any other).
function acceptedKey() {
  return `cytolens-accepted-${state.data.image.id}`;
}

function accepted() {
  return new Set(JSON.parse(sessionStorage.getItem(acceptedKey()) || "[]"));
}

function remember(cell) {
  if (cell.proposal_id === null) return;
  const ids = accepted();
  ids.add(cell.proposal_id);
  sessionStorage.setItem(acceptedKey(), JSON.stringify([...ids]));
}

function sameBox(a, b) {
  if (a === null || b === null) return a === b;
  return a.every((value, i) => Math.abs(value - b[i]) < 1e-6);
}

function asProposed(cell, proposal) {
  return (
    proposal !== undefined &&
    cell.class_name === proposal.class_name &&
    Math.abs(cell.x - proposal.x) < 1e-6 &&
    Math.abs(cell.y - proposal.y) < 1e-6 &&
    sameBox(cell.box, proposal.box)
  );
}

// The working cells: an unlabelled image's proposals, or the labels (a label still as proposed keeps its
// proposal's colour until accepted).
function workingCells(data) {
  const proposals = new Map(data.proposals.map((p) => [p.id, p]));
  const ids = accepted();
  if (data.version === 0) {
    return data.proposals.map((p) => ({
      x: p.x, y: p.y, box: p.box, class_name: p.class_name, proposal_id: p.id, label_id: null, proposal: p,
      labelled: false,
    }));
  }
  return data.labels.map((label) => {
    const proposal = proposals.get(label.proposal_id);
    const cell = {
      x: label.x, y: label.y, box: label.box, class_name: label.class_name, proposal_id: label.proposal_id,
      label_id: label.id, proposal,
    };
    cell.labelled = !asProposed(cell, proposal) || ids.has(label.proposal_id);
    return cell;
  });
}

function colourOf(cell) {
  if (cell.labelled || cell.proposal === undefined) {
    const known = state.classes.find((c) => c.name === cell.class_name);
    return known ? known.colour : UNKNOWN_CLASS;
  }
  return cell.proposal.uncertain ? UNCERTAIN : CONFIDENT;
}

function kindOf(cell) {
  if (cell.labelled || cell.proposal === undefined) return "labelled";
  return cell.proposal.uncertain ? "uncertain" : "confident";
}

function draw() {
  const group = $("cells");
  group.replaceChildren();
  const image = state.data.image;
  const radius = Math.max(4, Math.min(image.width, image.height) / 80);
  state.cells.forEach((cell, i) => {
    let shape;
    if (cell.box) {
      shape = document.createElementNS(SVG, "rect");
      const [x1, y1, x2, y2] = cell.box;
      shape.setAttribute("x", x1);
      shape.setAttribute("y", y1);
      shape.setAttribute("width", x2 - x1);
      shape.setAttribute("height", y2 - y1);
    } else {
      shape = document.createElementNS(SVG, "circle");
      shape.setAttribute("cx", cell.x);
      shape.setAttribute("cy", cell.y);
      shape.setAttribute("r", radius);
    }
    const colour = colourOf(cell);
    const kind = kindOf(cell);
    shape.setAttribute("class", `cell ${kind}${i === state.selected ? " selected" : ""}`);
    shape.setAttribute("stroke", colour);
    shape.setAttribute("fill", colour);
    shape.setAttribute("vector-effect", "non-scaling-stroke");
    shape.dataset.index = i;
    shape.dataset.kind = kind;
    shape.dataset.colour = colour;
    const title = document.createElementNS(SVG, "title");
    title.textContent = cell.class_name ?? "unknown class";
    shape.append(title);
    group.append(shape);
  });
  showSelected();
}

function showSelected() {
  const cell = state.cells[state.selected];
  if (cell === undefined) {
    $("selected").textContent = "none selected";
    return;
  }
  const parts = [cell.class_name ?? "unknown class"];
  if (cell.proposal) {
    const u = cell.proposal.uncertainties;
    for (const name of ["Ud", "Uc", "Ur"]) if (name in u) parts.push(`${name} ${u[name].toFixed(2)}`);
    if (cell.proposal.score !== null) parts.push(`score ${cell.proposal.score.toFixed(2)}`);
  }
  parts.push(cell.labelled ? "labelled" : "as proposed");
  $("selected").textContent = parts.join(", ");
}

function showClasses() {
  const list = $("classes");
  list.replaceChildren();
  state.classes.forEach((c, i) => {
    const item = document.createElement("li");
    const swatch = document.createElementNS(SVG, "svg");
    swatch.setAttribute("class", "swatch");
    swatch.setAttribute("viewBox", "0 0 1 1");
    const square = document.createElementNS(SVG, "rect");
    square.setAttribute("width", 1);
    square.setAttribute("height", 1);
    square.setAttribute("fill", c.colour);
    swatch.append(square);
    const key = i < 9 ? `${i + 1} ` : "";
    item.append(swatch, document.createTextNode(`${key}${c.name}`));
    item.dataset.index = i;
    if (i === state.currentClass) item.className = "current";
    item.addEventListener("click", () => relabel(i));
    list.append(item);
  });
}

function showProgress(queue) {
  $("progress").max = Math.max(queue.total, 1);
  $("progress").value = queue.reviewed;
  $("progress-text").textContent = `${queue.reviewed} / ${queue.total} reviewed`;
}

function applyView() {
  const v = state.view;
  $("view").setAttribute("transform", `translate(${v.tx} ${v.ty}) scale(${v.scale})`);
}

function fitView() {
  const image = state.data.image;
  const box = $("viewer").getBoundingClientRect();
  const scale = Math.min(box.width / image.width, box.height / image.height) || 1;
  state.view = { scale, tx: (box.width - image.width * scale) / 2, ty: (box.height - image.height * scale) / 2 };
  applyView();
}

async function openImage(index) {
  if (state.queue.length === 0) {
    status("the store holds no images");
    return;
  }
  state.index = Math.min(Math.max(index, 0), state.queue.length - 1);
  const entry = state.queue[state.index];
  history.replaceState(null, "", `#image=${entry.id}`);
  state.data = await api(`/api/images/${entry.id}/cells`);
  state.cells = workingCells(state.data);
  state.selected = -1;
  $("image-name").textContent = state.data.image.name;
  $("position").textContent = `image ${state.index + 1} of ${state.queue.length}`;
  const pixels = $("pixels");
  pixels.setAttribute("href", `/api/images/${entry.id}/pixels`);
  pixels.setAttribute("width", state.data.image.width);
  pixels.setAttribute("height", state.data.image.height);
  fitView();
  draw();
}

function reviewer() {
  const name = $("reviewer").value.trim();
  localStorage.setItem("cytolens-reviewer", name);
  return name;
}

// Save the working cells as the image's whole label set; the server answers with the image's cells as saved.
async function save(keep) {
  const who = reviewer();
  if (!who) {
    status("enter your name as reviewer before editing", true);
    return;
  }
  state.saving = true;
  status("saving…");
  const labels = state.cells.map((c) => ({
    x: c.x, y: c.y, box: c.box, class_name: c.class_name, proposal_id: c.proposal_id, label_id: c.label_id,
  }));
  try {
    state.data = await api(`/api/images/${state.data.image.id}/labels`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version: state.data.version, reviewer: who, labels }),
    });
    state.cells = workingCells(state.data);
    state.selected = keep ? state.cells.findIndex((c) => c.x === keep.x && c.y === keep.y && sameBox(c.box, keep.box)) : -1;
    showProgress(await api("/api/queue"));
    status(`saved (version ${state.data.version})`);
  } catch (error) {
    status(error.message, true);
    if (error.status === 409) {
      state.data = await api(`/api/images/${state.data.image.id}/cells`);
      state.cells = workingCells(state.data);
      state.selected = -1;
    }
  } finally {
    state.saving = false;
    draw();
  }
}

function edit(change) {
  if (state.saving) return;
  const kept = change();
  save(kept);
}

function accept() {
  const cell = state.cells[state.selected];
  if (cell === undefined) return;
  edit(() => {
    cell.labelled = true;
    remember(cell);
    return cell;
  });
}

function relabel(classIndex) {
  if (classIndex >= state.classes.length) return;
  state.currentClass = classIndex;
  showClasses();
  const cell = state.cells[state.selected];
  if (cell === undefined) return;
  edit(() => {
    cell.class_name = state.classes[classIndex].name;
    cell.labelled = true;
    return cell;
  });
}

function remove() {
  if (state.selected < 0) return;
  edit(() => {
    state.cells.splice(state.selected, 1);
    return null;
  });
}

function add(x, y, box) {
  const cell = {
    x, y, box, class_name: state.classes[state.currentClass]?.name ?? null, proposal_id: null, label_id: null,
    proposal: undefined, labelled: true,
  };
  edit(() => {
    state.cells.push(cell);
    return cell;
  });
}

function setMode(mode) {
  state.mode = mode;
  $("viewer").classList.toggle("adding", mode !== null);
  if (mode) status(mode === "box" ? "drag to draw a box" : "click to add a point");
}

// Pointer: wheel zooms about the cursor; drag pans (or draws a box in box mode); a click selects or adds a point.
function imagePoint(event) {
  const matrix = $("view").getScreenCTM().inverse();
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix);
  const { width, height } = state.data.image;  // cells stay inside the image: the store refuses any that leave it
  return { x: Math.min(Math.max(point.x, 0), width), y: Math.min(Math.max(point.y, 0), height) };
}

function onWheel(event) {
  event.preventDefault();
  const box = $("viewer").getBoundingClientRect();
  const [cx, cy] = [event.clientX - box.left, event.clientY - box.top];
  const factor = Math.exp(-event.deltaY * 0.0015);
  const v = state.view;
  v.tx = cx - (cx - v.tx) * factor;
  v.ty = cy - (cy - v.ty) * factor;
  v.scale *= factor;
  applyView();
}

let drag = null;

function onDown(event) {
  if (event.button !== 0 || state.data === null) return;
  drag = { x: event.clientX, y: event.clientY, tx: state.view.tx, ty: state.view.ty, start: imagePoint(event), moved: false };
  $("viewer").setPointerCapture(event.pointerId);
}

function onMove(event) {
  if (drag === null) return;
  const [dx, dy] = [event.clientX - drag.x, event.clientY - drag.y];
  drag.moved ||= Math.hypot(dx, dy) > 3;
  if (state.mode === "box") {
    const end = imagePoint(event);
    const rect = $("drawing");
    rect.setAttribute("x", Math.min(drag.start.x, end.x));
    rect.setAttribute("y", Math.min(drag.start.y, end.y));
    rect.setAttribute("width", Math.abs(end.x - drag.start.x));
    rect.setAttribute("height", Math.abs(end.y - drag.start.y));
    rect.setAttribute("vector-effect", "non-scaling-stroke");
    rect.classList.remove("hidden");
    return;
  }
  state.view.tx = drag.tx + dx;
  state.view.ty = drag.ty + dy;
  applyView();
}

function onUp(event) {
  if (drag === null) return;
  const { start, moved } = drag;
  drag = null;
  $("drawing").classList.add("hidden");
  const end = imagePoint(event);
  if (state.mode === "box") {
    setMode(null);
    const [x1, y1, x2, y2] = [Math.min(start.x, end.x), Math.min(start.y, end.y), Math.max(start.x, end.x), Math.max(start.y, end.y)];
    if (moved && x2 - x1 >= 2 && y2 - y1 >= 2) add((x1 + x2) / 2, (y1 + y2) / 2, [x1, y1, x2, y2]);
    return;
  }
  if (moved) return;
  if (state.mode === "point") {
    setMode(null);
    add(end.x, end.y, null);
    return;
  }
  const target = document.elementFromPoint(event.clientX, event.clientY);
  state.selected = target?.classList?.contains("cell") ? Number(target.dataset.index) : -1;
  draw();
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || state.data === null || event.ctrlKey || event.metaKey) return;
  const key = event.key;
  if (key === "a") accept();
  else if (/^[1-9]$/.test(key)) relabel(Number(key) - 1);
  else if (key === "d" || key === "Delete") remove();
  else if (key === "b") setMode("box");
  else if (key === "p") setMode("point");
  else if (key === "n" || key === "ArrowRight") openImage(state.index + 1).catch((error) => status(error.message, true));
  else if (key === "ArrowLeft") openImage(state.index - 1).catch((error) => status(error.message, true));
  else if (key === "Escape") {
    setMode(null);
    state.selected = -1;
    draw();
  } else return;
  event.preventDefault();
}

async function start() {
  try {
    const setup = await api("/api/setup");
    state.classes = setup.classes;
    $("reviewer").value = localStorage.getItem("cytolens-reviewer") || setup.reviewer || "";
    showClasses();
    const queue = await api("/api/queue");
    state.queue = queue.images;
    showProgress(queue);
    const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("image"));
    const index = state.queue.findIndex((entry) => entry.id === wanted);
    await openImage(index >= 0 ? index : 0);
    status("ready");
  } catch (error) {
    status(error.message, true);
  }
  const viewer = $("viewer");
  viewer.addEventListener("wheel", onWheel, { passive: false });
  viewer.addEventListener("pointerdown", onDown);
  viewer.addEventListener("pointermove", onMove);
  viewer.addEventListener("pointerup", onUp);
  document.addEventListener("keydown", onKey);
}

start();
