// File helpers with tnl's guarantees: errors name the path; writes are atomic (temporary name in the same
// directory, fsync, rename), so an interrupted write never leaves a half-written file behind.

import { ioError } from "./errors.ts";

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const tmp = `${dir}/.${path.slice(path.lastIndexOf("/") + 1)}.tmp-${Deno.pid}-${Date.now()}`;
  try {
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let off = 0;
      while (off < bytes.length) off += await f.write(bytes.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      await Deno.remove(tmp);
    } catch { /* nothing to clean */ }
    throw ioError("write", path, e);
  }
}
