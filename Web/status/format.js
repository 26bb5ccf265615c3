// Number and time formatting for the status page. Pure functions, no DOM.

const DASH = "–";

/** 1234 → "1,234"; null/undefined/NaN → "–". */
export function integer(value) {
  if (!Number.isFinite(value)) return DASH;
  return Math.round(value).toLocaleString("en-US");
}

/** Rates: 0 → "0", 0.25 → "0.25", 3.14159 → "3.1", 1234.5 → "1,235". */
export function rate(value) {
  if (!Number.isFinite(value)) return DASH;
  const abs = Math.abs(value);
  if (abs === 0) return "0";
  if (abs < 1) return value.toFixed(2);
  if (abs < 100) return value.toFixed(1);
  return integer(value);
}

/** 0.034 → "3.4%"; 0 → "0%". */
export function percent(fraction) {
  if (!Number.isFinite(fraction)) return DASH;
  const p = fraction * 100;
  if (p === 0) return "0%";
  if (Math.abs(p) < 10) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

/** Milliseconds: 0.42 → "0.42 ms", 12.3 → "12.3 ms", 1830 → "1.83 s". */
export function ms(value) {
  if (!Number.isFinite(value)) return DASH;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

/** Bytes in binary units: 512 → "512 B", 1536 → "1.5 KiB", 8388608 → "8.0 MiB". */
export function bytes(value) {
  if (!Number.isFinite(value)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(v)} B`;
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[unit]}`;
}

/** Seconds as a duration: 42 → "42 s", 125 → "2 m 05 s", 93784 → "1 d 2 h". */
export function duration(seconds) {
  if (!Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A Date (or ms since the epoch) as local "HH:MM:SS". */
export function clockTime(date) {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return DASH;
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Compact axis labels: 0, 950, 1.2k, 3.4M; `unit` picks the formatter family. */
export function axis(value, unit) {
  if (value === 0) return "0";
  if (unit === "bytes") return bytes(value);
  if (unit === "percent") return percent(value);
  if (unit === "ms") return ms(value);
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${Math.round(value / 1e3)}k`;
  if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  if (abs >= 10 || value === 0) return String(Math.round(value));
  return String(+value.toFixed(2));
}

/** Formats by unit name, for legends and current values. */
export function byUnit(value, unit) {
  switch (unit) {
    case "bytes": return bytes(value);
    case "percent": return percent(value);
    case "ms": return ms(value);
    case "count": return integer(value);
    default: return rate(value);
  }
}

export { DASH };
