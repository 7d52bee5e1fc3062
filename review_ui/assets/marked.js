// gapfill's marked text: untrusted text with some spans highlighted (a word diff, a masked PII
// finding). Every segment becomes a text node through textContent: nothing in it is ever parsed
// as HTML or Markdown, so a <script> or a link in model output stays inert text.
const LABELS = { add: "added", del: "removed", pii: "masked personal data or secret" };

export default function (component) {
  const { data, parentElement } = component;
  let root = parentElement.querySelector(".marked");
  if (root === null) {
    root = document.createElement("div");
    root.className = "marked";
    parentElement.appendChild(root);
  }
  const nodes = (data.segments || []).map(([text, mark]) => {
    const node = document.createElement(mark ? "mark" : "span");
    node.textContent = String(text);
    if (mark) {
      node.className = String(mark);
      node.title = LABELS[mark] || "";
    }
    return node;
  });
  root.replaceChildren(...nodes);
  root.dataset.testid = "marked-text";
}
