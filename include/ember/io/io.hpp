#pragma once
/// \file
/// ember's file formats: NumPy .npy arrays (npy.hpp) and safetensors checkpoints
/// (safetensors.hpp), both saved through the atomic writer (atomic_file.hpp). Include this
/// one header to get all of them. They need POSIX file calls (open, pread, fsync, rename).
#include "ember/io/atomic_file.hpp"
#include "ember/io/npy.hpp"
#include "ember/io/safetensors.hpp"
