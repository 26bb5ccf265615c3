// A table body whose rows are keyed (one <tr> per key, kept across refreshes): rows are created once,
// their cells' text is changed only when it differs, rows are moved only when the order changed, and
// rows whose key disappeared are removed. No innerHTML, no full re-render.

/** Sets an element's text (and data-value) only when it changed. */
export function setText(element, text, value) {
  if (!element) return;
  if (element.textContent !== text) element.textContent = text;
  if (value !== undefined) {
    const raw = value === null || value === undefined || Number.isNaN(value) ? "" : String(value);
    if (element.dataset.value !== raw) element.dataset.value = raw;
  }
}

export class KeyedTable {
  /**
   * @param {HTMLTableSectionElement} tbody
   * @param {{keyAttribute: string, columns: {field: string, label: string, numeric?: boolean,
   *          render: (item: object, cell: HTMLElement) => void}[], empty: string,
   *          decorate?: (item: object, row: HTMLTableRowElement) => void}} options
   *   `render` fills one cell (usually with setText); the first column is the row header.
   */
  constructor(tbody, options) {
    this.tbody = tbody;
    this.options = options;
    this.rows = new Map();
    this.emptyRow = document.createElement("tr");
    this.emptyRow.className = "empty";
    const cell = document.createElement("td");
    cell.colSpan = options.columns.length;
    cell.textContent = options.empty;
    this.emptyRow.append(cell);
  }

  createRow(key) {
    const row = document.createElement("tr");
    row.dataset[this.options.keyAttribute] = key;
    this.options.columns.forEach((column, index) => {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) cell.scope = "row";
      cell.dataset.field = column.field;
      cell.dataset.label = column.label;
      if (column.numeric) cell.className = "num";
      row.append(cell);
    });
    return row;
  }

  /** Shows `items` (already in display order), keyed by `keyOf(item)`. */
  update(items, keyOf) {
    const seen = new Set();
    let cursor = this.tbody.firstElementChild;
    if (cursor === this.emptyRow && items.length) {
      this.emptyRow.remove();
      cursor = this.tbody.firstElementChild;
    }
    for (const item of items) {
      const key = String(keyOf(item));
      seen.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = this.createRow(key);
        this.rows.set(key, row);
      }
      const cells = row.children;
      this.options.columns.forEach((column, index) => column.render(item, cells[index]));
      this.options.decorate?.(item, row);
      if (row !== cursor) this.tbody.insertBefore(row, cursor);
      else cursor = cursor.nextElementSibling;
    }
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.remove();
        this.rows.delete(key);
      }
    }
    if (!items.length && this.emptyRow.parentNode !== this.tbody) this.tbody.append(this.emptyRow);
  }
}
