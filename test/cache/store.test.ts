import { LocalCache } from '../../src/cache/store.js';
import { describeCacheContract } from './cache-contract.js';

describeCacheContract('local', (root, onCorrupt) => new LocalCache(root, { onCorrupt: (_kind, _key, problem) => onCorrupt(problem) }));
