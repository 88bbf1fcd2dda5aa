/**
 * A copy of `bytes` in a fresh ArrayBuffer of exactly its length, safe to keep or to transfer to
 * another thread. Not `bytes.slice()`: for a Node Buffer (what msgpackr and most Node APIs return)
 * slice() is a view of the same memory, and transferring that view's buffer detaches the original.
 */
export function exactCopy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}
