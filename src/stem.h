/* stem: STEM inversion ("A Video is Worth 256 Bases", CVPR 2024) for zero-shot video
 * editing with Stable Diffusion, in C. The public API: include this header only. */
#ifndef STEM_H
#define STEM_H

#include "core/error.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/tensor_map.h"
#include "core/backend.h"
#include "core/host.h"
#include "core/ops.h"
#include "core/arena.h"
#include "core/op_registry.h"
#include "core/cpu_info.h"
#include "io/safetensors.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/frames.h"
#include "io/metrics.h"
#include "io/yaml_config.h"
#include "models/tokenizer.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/sd_model.h"
#include "stem/ddim.h"
#include "stem/em.h"
#include "stem/stem_attention.h"
#include "pipeline/pipeline.h"
#include "pipeline/invert.h"
#include "check/op_catalog.h"
#include "check/golden.h"
#include "backends/backends.h"

#define STEM_VERSION "0.1.0"

#endif
