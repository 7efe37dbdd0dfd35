// keras-groupnl: the fused GroupNL tail as a TensorFlow Lite Micro custom op.
//
// Register it with
//   resolver.AddCustom("KERAS_GROUPNL_TAIL", Register_KERAS_GROUPNL_TAIL());
// (the generated <model>_ops.h does). Inputs: int8 seed maps, int8 tables,
// int32 channel plan, int32 header; output: int8 (see keras_groupnl_tail.h).
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

extern "C" {
#include "keras_groupnl_tail.h"
}

namespace {

struct OpData {
  int scratch;  // one pixel's seed maps: int16 differences, then bytes
  int seeds;
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(OpData));
}

// The constant inputs as the converter writes them; anything else is a
// file this op was not made for.
TfLiteStatus CheckInputs(TfLiteContext* context, const TfLiteTensor* x,
                         const TfLiteTensor* tables, const TfLiteTensor* plan,
                         const TfLiteTensor* header, const TfLiteTensor* out) {
  TF_LITE_ENSURE_TYPES_EQ(context, x->type, kTfLiteInt8);
  TF_LITE_ENSURE_TYPES_EQ(context, tables->type, kTfLiteInt8);
  TF_LITE_ENSURE_TYPES_EQ(context, plan->type, kTfLiteInt32);
  TF_LITE_ENSURE_TYPES_EQ(context, header->type, kTfLiteInt32);
  TF_LITE_ENSURE_TYPES_EQ(context, out->type, kTfLiteInt8);
  TF_LITE_ENSURE_MSG(context,
                     tflite::IsConstantTensor(tables) &&
                         tflite::IsConstantTensor(plan) &&
                         tflite::IsConstantTensor(header),
                     "KERAS_GROUPNL_TAIL: tables, plan and header must be "
                     "constant");
  TF_LITE_ENSURE_EQ(context, header->dims->size, 1);
  TF_LITE_ENSURE_EQ(context, header->dims->data[0], 6);
  TF_LITE_ENSURE_EQ(context, tables->dims->size, 2);
  TF_LITE_ENSURE_EQ(context, tables->dims->data[1], 256);
  TF_LITE_ENSURE_EQ(context, plan->dims->size, 2);
  TF_LITE_ENSURE_EQ(context, plan->dims->data[0], KERAS_GROUPNL_PLAN_ROWS);
  // The output is the input with `filters` channels.
  const int dims = x->dims->size;
  TF_LITE_ENSURE(context, dims >= 1);
  TF_LITE_ENSURE_EQ(context, out->dims->size, dims);
  for (int i = 0; i < dims - 1; ++i) {
    TF_LITE_ENSURE_EQ(context, out->dims->data[i], x->dims->data[i]);
  }
  TF_LITE_ENSURE_EQ(context, out->dims->data[dims - 1], plan->dims->data[1]);
  const int32_t* head = tflite::GetTensorData<int32_t>(header);
  const int in_channels = x->dims->data[dims - 1];
  TF_LITE_ENSURE_MSG(
      context, keras_groupnl_tail_check_header(head, in_channels) == 0,
      "KERAS_GROUPNL_TAIL: bad header for this input (zero point, output "
      "range, mode, grouping, or more than 1024 seed maps)");
  TF_LITE_ENSURE_MSG(
      context,
      keras_groupnl_tail_check_plan(tflite::GetTensorData<int32_t>(plan),
                                    plan->dims->data[1],
                                    in_channels / head[4],
                                    tables->dims->data[0], head[3]) == 0,
      "KERAS_GROUPNL_TAIL: bad channel plan");
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_EQ(context, tflite::NumInputs(node), 4);
  TF_LITE_ENSURE_EQ(context, tflite::NumOutputs(node), 1);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteTensor* x = micro->AllocateTempInputTensor(node, 0);
  TfLiteTensor* tables = micro->AllocateTempInputTensor(node, 1);
  TfLiteTensor* plan = micro->AllocateTempInputTensor(node, 2);
  TfLiteTensor* header = micro->AllocateTempInputTensor(node, 3);
  TfLiteTensor* out = micro->AllocateTempOutputTensor(node, 0);
  TF_LITE_ENSURE(context, x != nullptr && tables != nullptr &&
                              plan != nullptr && header != nullptr &&
                              out != nullptr);
  TfLiteStatus status = CheckInputs(context, x, tables, plan, header, out);
  if (status == kTfLiteOk) {
    auto* data = static_cast<OpData*>(node->user_data);
    const int32_t group_in = tflite::GetTensorData<int32_t>(header)[4];
    data->seeds = x->dims->data[x->dims->size - 1] / group_in;
    status = context->RequestScratchBufferInArena(context, 3 * data->seeds,
                                                  &data->scratch);
  }
  micro->DeallocateTempTfLiteTensor(x);
  micro->DeallocateTempTfLiteTensor(tables);
  micro->DeallocateTempTfLiteTensor(plan);
  micro->DeallocateTempTfLiteTensor(header);
  micro->DeallocateTempTfLiteTensor(out);
  return status;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* x = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* tables =
      tflite::micro::GetEvalInput(context, node, 1);
  const TfLiteEvalTensor* plan = tflite::micro::GetEvalInput(context, node, 2);
  const TfLiteEvalTensor* header =
      tflite::micro::GetEvalInput(context, node, 3);
  TfLiteEvalTensor* out = tflite::micro::GetEvalOutput(context, node, 0);
  const int dims = x->dims->size;
  const int32_t in_channels = x->dims->data[dims - 1];
  int32_t pixels = 1;
  for (int i = 0; i < dims - 1; ++i) pixels *= x->dims->data[i];
  auto* data = static_cast<OpData*>(node->user_data);
  // Scratch buffers are aligned: the int16 part first, then the bytes.
  auto* diff =
      static_cast<int16_t*>(context->GetScratchBuffer(context, data->scratch));
  auto* index = reinterpret_cast<uint8_t*>(diff + data->seeds);
  const int status = keras_groupnl_tail_s8(
      tflite::micro::GetTensorData<int8_t>(x), pixels, in_channels,
      tflite::micro::GetTensorData<int8_t>(tables),
      tflite::micro::GetTensorData<int32_t>(plan), plan->dims->data[1],
      tflite::micro::GetTensorData<int32_t>(header), diff, index,
      tflite::micro::GetTensorData<int8_t>(out));
  if (status != 0) {
    MicroPrintf("KERAS_GROUPNL_TAIL: the kernel refused its header");
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration* Register_KERAS_GROUPNL_TAIL() {
  static TFLMRegistration registration =
      tflite::micro::RegisterOp(Init, Prepare, Eval);
  return &registration;
}
