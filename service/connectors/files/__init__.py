"""What the file kinds (csv, jsonl) share: options and paths through the file policy, the streaming
source with byte-offset resume, the atomic part-file target, and value conversion by target form."""
