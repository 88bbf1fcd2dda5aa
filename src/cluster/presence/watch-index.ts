/**
 * The local half of subscribe-on-open: which connection of which local node watches which target
 * (`u:<user>` or `c:<conv>`). Pure bookkeeping, no I/O. The stored half (presence:w:<target>) only
 * says which nodes watch; this index turns an event arriving at a node into its connections.
 */
export class WatchIndex {
  /** `<node>\n<connId>` → that connection's targets. */
  private readonly conns = new Map<string, Set<string>>();
  /** node → target → local connections watching it. */
  private readonly nodes = new Map<string, Map<string, Set<string>>>();

  count(node: string, connId: string): number {
    return this.conns.get(connKey(node, connId))?.size ?? 0;
  }

  /** How many of `targets` (deduplicated) the connection does not watch yet. */
  countNew(node: string, connId: string, targets: readonly string[]): number {
    const mine = this.conns.get(connKey(node, connId));
    let n = 0;
    for (const t of new Set(targets)) if (!mine?.has(t)) n++;
    return n;
  }

  /**
   * Adds targets to a connection. Returns what it added (for a rollback) and which of those no
   * other connection of the node watched before (they need a stored watcher entry).
   */
  add(node: string, connId: string, targets: readonly string[]): { added: string[]; newForNode: string[] } {
    const key = connKey(node, connId);
    let mine = this.conns.get(key);
    if (mine === undefined) this.conns.set(key, (mine = new Set()));
    let byTarget = this.nodes.get(node);
    if (byTarget === undefined) this.nodes.set(node, (byTarget = new Map()));
    const added: string[] = [];
    const newForNode: string[] = [];
    for (const t of targets) {
      if (mine.has(t)) continue;
      mine.add(t);
      added.push(t);
      let watchers = byTarget.get(t);
      if (watchers === undefined) {
        byTarget.set(t, (watchers = new Set()));
        newForNode.push(t);
      }
      watchers.add(connId);
    }
    return { added, newForNode };
  }

  /** Removes targets from a connection; returns those no connection of the node watches any more. */
  remove(node: string, connId: string, targets: Iterable<string>): string[] {
    const key = connKey(node, connId);
    const mine = this.conns.get(key);
    const byTarget = this.nodes.get(node);
    if (mine === undefined || byTarget === undefined) return [];
    const gone: string[] = [];
    for (const t of [...targets]) {
      if (!mine.delete(t)) continue;
      const watchers = byTarget.get(t);
      watchers?.delete(connId);
      if (watchers !== undefined && watchers.size === 0) {
        byTarget.delete(t);
        gone.push(t);
      }
    }
    if (mine.size === 0) this.conns.delete(key);
    if (byTarget.size === 0) this.nodes.delete(node);
    return gone;
  }

  removeAll(node: string, connId: string): string[] {
    const mine = this.conns.get(connKey(node, connId));
    return mine === undefined ? [] : this.remove(node, connId, mine);
  }

  /** The local connections of `node` watching `target`, in watch order. */
  connsWatching(node: string, target: string): string[] {
    const watchers = this.nodes.get(node)?.get(target);
    return watchers === undefined ? [] : [...watchers];
  }

  /** Every watched target per node: what a renewal re-stores. */
  targetsByNode(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [node, byTarget] of this.nodes) out.set(node, [...byTarget.keys()]);
    return out;
  }

  /** Forgets every watch of `node` and returns its targets (the node stopped listening). */
  dropNode(node: string): string[] {
    const byTarget = this.nodes.get(node);
    if (byTarget === undefined) return [];
    this.nodes.delete(node);
    const prefix = connKey(node, '');
    for (const key of [...this.conns.keys()]) if (key.startsWith(prefix)) this.conns.delete(key);
    return [...byTarget.keys()];
  }
}

function connKey(node: string, connId: string): string {
  return `${node}\n${connId}`;
}
