// Building DOM nodes without innerHTML: every text is set as text, never parsed.

/** An element: h("a", {href: "/", class: "x", onclick: fn}, "text", child, [more]). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append children (strings, nodes, arrays of them; null and false are skipped). */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

/** Replace every child of ``parent``. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let nextId = 0;

/** A page-unique id for label/aria links. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** Show an outcome in a message area: an error's code and message, or a success text. */
export function showOutcome(area, outcome) {
  area.classList.toggle("error", outcome.error !== undefined);
  area.setAttribute("role", outcome.error !== undefined ? "alert" : "status");
  if (outcome.error !== undefined) {
    replace(area, h("strong", { class: "code" }, outcome.error.code), " ", outcome.error.message);
  } else {
    replace(area, ...[].concat(outcome.text));
  }
}
