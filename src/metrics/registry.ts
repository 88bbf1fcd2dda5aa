import { Registry } from 'prom-client';

/**
 * The process-wide (per thread) metrics registry. Every subsystem registers its metrics here; the
 * main thread merges the registries of all shard threads into one /metrics scrape.
 */
export const registry = new Registry();
