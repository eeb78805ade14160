// End-to-end tests start several multi-threaded processes each; on a 2-core machine running two such tests
// at once only makes both slower and their deadlines flakier, and the seed example needs its fixed ports.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
