//! vcompare's KVM microVM: the "own kernel, exclusive RAM and vCPUs" half of the comparison.
