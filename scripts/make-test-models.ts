import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { writeTestModels } from './test-models.js';

// Writes the ONNX models the tests and benchmarks use into test/models/.
const dir = path.join(packageRoot, 'test', 'models');
const files = writeTestModels(dir);
process.stdout.write(`wrote ${files.length + 2} test models to ${path.relative(process.cwd(), dir)}\n`);
